# tests/pth/tests.cmake — the PyTorch round trip (included from tests/CMakeLists.txt).
# make_models.py saves tiny official-layout checkpoints with torch.save and converts each with
# tools/convert_checkpoint.py; test_pth's hidden [pth_torch] cases then check that the C++ loader
# reads every .pth to exactly the tensors of its safetensors twin. Without an importable torch
# the test is reported as skipped (CI installs python3-torch, so there it runs).
find_package(Python3 COMPONENTS Interpreter QUIET)
set(MVAR_PTH_PYTHONS ${Python3_EXECUTABLE} /usr/bin/python3 python3)
add_test(NAME pth_torch_roundtrip
         COMMAND ${CMAKE_COMMAND} "-DPYTHONS=${MVAR_PTH_PYTHONS}"
                 -DSCRIPT=${CMAKE_CURRENT_LIST_DIR}/make_models.py
                 -DOUT=${CMAKE_CURRENT_BINARY_DIR}/pth_models
                 -DTEST_EXE=$<TARGET_FILE:test_pth>
                 -P ${CMAKE_CURRENT_LIST_DIR}/roundtrip.cmake)
set_tests_properties(pth_torch_roundtrip PROPERTIES LABELS "unit;python" SKIP_REGULAR_EXPRESSION "SKIPPED: ")
