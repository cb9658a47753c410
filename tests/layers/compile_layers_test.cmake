# The compiler, given a layer's own include folders (rfaas_layer_includes), finds the headers of
# the layers below it and not those above: a fabric file that includes its own layer's headers
# compiles; the planted one that includes the executor's does not find it.
#   cmake -DCXX=<compiler> -DROOT=<source tree> -DINCLUDE_DIRS=<folders, ;-separated> -P compile_layers_test.cmake
set(flags -std=c++20 -fsyntax-only)
foreach(dir IN LISTS INCLUDE_DIRS)
  if(dir)
    list(APPEND flags -I${dir})
  endif()
endforeach()
execute_process(COMMAND ${CXX} ${flags} ${ROOT}/runtime/fabric/fabric.cpp RESULT_VARIABLE ok_rc ERROR_VARIABLE ok_err)
if(NOT ok_rc EQUAL 0)
  message(FATAL_ERROR "the fabric does not compile with its own include folders:\n${ok_err}")
endif()
execute_process(COMMAND ${CXX} ${flags} ${ROOT}/tests/layers/violation/runtime/fabric/reaches_up.cpp
                RESULT_VARIABLE bad_rc ERROR_VARIABLE bad_err)
if(bad_rc EQUAL 0)
  message(FATAL_ERROR "the fabric's include folders reach executor/worker.hpp")
endif()
if(NOT bad_err MATCHES "executor/worker.hpp(: No such file or directory|' file not found)")
  message(FATAL_ERROR "the planted include failed for another reason:\n${bad_err}")
endif()
message(STATUS "layers.compiler: the fabric finds its own headers, not the executor's")
