# cmake/Sanitizers.cmake — MVAR_SANITIZE=ON builds mvar's own targets (tests, examples, benchmarks:
# everything linking mvar_project_flags) with AddressSanitizer + UndefinedBehaviorSanitizer.
# Never on the exported INTERFACE target `mvar`: consumers choose their own flags.
#
# Any sanitizer report aborts the process (-fno-sanitize-recover=all), so CTest sees it as a
# failure. Use with -DCMAKE_BUILD_TYPE=Debug: the flags below add -O1 (ASan's recommended
# trade-off between speed and precise reports); a Release build's -O2 would override it.
#   cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DMVAR_SANITIZE=ON -DMVAR_BUILD_BENCH=OFF
#   cmake --build build-asan -j2 && ctest --test-dir build-asan -j2 --output-on-failure
if(MVAR_SANITIZE)
  if(NOT CMAKE_CXX_COMPILER_ID MATCHES "GNU|Clang")
    message(FATAL_ERROR "MVAR_SANITIZE needs GCC or Clang (got ${CMAKE_CXX_COMPILER_ID})")
  endif()
  if(CMAKE_BUILD_TYPE STREQUAL "Release")
    message(WARNING "MVAR_SANITIZE with CMAKE_BUILD_TYPE=Release: tests keep -O2; use Debug for -O1")
  endif()
  set(MVAR_SANITIZER_FLAGS -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer)
  target_compile_options(mvar_project_flags INTERFACE ${MVAR_SANITIZER_FLAGS} -O1 -g)
  target_link_options(mvar_project_flags INTERFACE -fsanitize=address,undefined)
  message(STATUS "mvar: ASan + UBSan on tests/examples/benchmarks (MVAR_SANITIZE=ON)")
endif()
