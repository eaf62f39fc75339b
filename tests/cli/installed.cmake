# `cmake --install` into a fresh prefix gives a working `mvar-generate` that finds its default model
# in <prefix>/share/mvar/models, wherever the prefix is.   cmake -DBUILD= -DWORK= -P installed.cmake
file(REMOVE_RECURSE ${WORK})
execute_process(COMMAND ${CMAKE_COMMAND} --install ${BUILD} --prefix ${WORK}/prefix RESULT_VARIABLE rc OUTPUT_QUIET ERROR_VARIABLE err)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "cmake --install failed (${rc}):\n${err}")
endif()
file(RENAME ${WORK}/prefix ${WORK}/moved)  # relocatable: no path of the build or of the prefix is baked in
unset(ENV{MVAR_MODEL_DIR})
execute_process(COMMAND ${WORK}/moved/bin/mvar-generate --batch 2 --quiet --output ${WORK}/x.png
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(NOT rc EQUAL 0 OR NOT EXISTS ${WORK}/x.png)
  message(FATAL_ERROR "installed mvar-generate: exit ${rc}\n${out}${err}")
endif()
foreach(f include/mvar/mvar.hpp include/mvar/pipeline/pipeline.hpp share/cmake/mvar/mvarConfig.cmake share/mvar/models/fashion_mnist/config.json)
  if(NOT EXISTS ${WORK}/moved/${f})
    message(FATAL_ERROR "not installed: ${f}")
  endif()
endforeach()
message(STATUS "ok")
