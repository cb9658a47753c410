# The layer check passes on the tree and refuses a deliberate violation, naming it.
#   cmake -DROOT=<source tree> -P check_layers_test.cmake
execute_process(COMMAND ${CMAKE_COMMAND} -DROOT=${ROOT} -P ${ROOT}/cmake/check_layers.cmake
                RESULT_VARIABLE tree_rc ERROR_VARIABLE tree_err)
if(NOT tree_rc EQUAL 0)
  message(FATAL_ERROR "the tree violates its layers:\n${tree_err}")
endif()
execute_process(COMMAND ${CMAKE_COMMAND} -DROOT=${ROOT}/tests/layers/violation -P ${ROOT}/cmake/check_layers.cmake
                RESULT_VARIABLE bad_rc ERROR_VARIABLE bad_err)
if(bad_rc EQUAL 0)
  message(FATAL_ERROR "the check let runtime/fabric include executor/worker.hpp")
endif()
if(NOT bad_err MATCHES "runtime/fabric/reaches_up.cpp includes \"executor/worker.hpp\"")
  message(FATAL_ERROR "the check failed without naming the violation:\n${bad_err}")
endif()
message(STATUS "layers: the tree passes; a fabric file including the executor is refused")
