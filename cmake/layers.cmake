# The layers: which folder may include which. One table, read twice:
#  - cmake/check_layers.cmake, run by every build, refuses an include across them by name;
#  - rfaas_layer_includes() below gives a layer's targets the include folders of exactly the
#    layers it may use, so that the compiler cannot find a header of any other.
# What may be included, by folder (prefixes of the quoted include path, comma-separated):
set(RFAAS_LAYERS
  "runtime/clock="
  "runtime/text="
  "runtime/cli="
  "runtime/net=net/,rfaas/coded_error.hpp"
  "runtime/protocol=protocol/,rfaas/coded_error.hpp"
  "runtime/fabric=fabric/,net/,text/,rfaas/fabric/"
  "runtime/auth=auth/,protocol/,rfaas/coded_error.hpp"
  "runtime/client=client/,text/,protocol/,fabric/,net/,clock/,auth/,rfaas/client.hpp,rfaas/rfaas.h,rfaas/fabric/"
  "runtime/executor=executor/,cli/,protocol/,fabric/,net/,clock/,rfaas/fabric/,rfaas/function.h"
  "runtime/daemon=daemon/,text/,cli/,protocol/,net/,rfaas/fabric/"
  "runtime/include/rfaas=rfaas/"
  "lease-broker=protocol/,net/,auth/,cli/,rfaas/coded_error.hpp"
  "mpi-interop=rfaas/client.hpp,rfaas/rfaas.h,rfaas/rfaas_mpi.h"
  "apps=rfaas/client.hpp,rfaas/rfaas.h,rfaas/rfaas_mpi.h"
  "functions=rfaas/function.h")

# Gives `target` the include folders the table allows `folder` (e.g. runtime/executor): for each
# runtime layer it may include, a folder of the build holding only a link to that layer's sources
# (build/layer-headers/<layer>/<layer>), and runtime/include for the public headers. Nothing
# exports runtime/ as a whole: tests and benchmarks, which reach inside, name it themselves.
function(rfaas_layer_includes target folder)
  set(_allowed "")
  set(_found FALSE)
  foreach(_entry IN LISTS RFAAS_LAYERS)
    string(FIND "${_entry}" "=" _eq)
    string(SUBSTRING "${_entry}" 0 ${_eq} _dir)
    if(_dir STREQUAL folder)
      math(EXPR _from "${_eq} + 1")
      string(SUBSTRING "${_entry}" ${_from} -1 _allowed)
      string(REPLACE "," ";" _allowed "${_allowed}")
      set(_found TRUE)
    endif()
  endforeach()
  if(NOT _found)
    message(FATAL_ERROR "rfaas_layer_includes: ${folder} is not in the layer table (cmake/layers.cmake)")
  endif()
  set(_public FALSE)
  foreach(_prefix IN LISTS _allowed)
    if(_prefix MATCHES "^([a-z]+)/$")
      set(_layer ${CMAKE_MATCH_1})
      set(_stage ${CMAKE_BINARY_DIR}/layer-headers/${_layer})
      set(_link ${_stage}/${_layer})
      set(_points_to "")
      if(IS_SYMLINK ${_link})
        file(READ_SYMLINK ${_link} _points_to)
      endif()
      if(NOT _points_to STREQUAL "${PROJECT_SOURCE_DIR}/runtime/${_layer}")  # new, or a moved tree's
        file(REMOVE ${_link})
        file(MAKE_DIRECTORY ${_stage})
        file(CREATE_LINK ${PROJECT_SOURCE_DIR}/runtime/${_layer} ${_link} SYMBOLIC)
      endif()
      target_include_directories(${target} PRIVATE $<BUILD_INTERFACE:${_stage}>)
    elseif(_prefix MATCHES "^rfaas/")
      set(_public TRUE)
    endif()
  endforeach()
  if(_public)
    target_include_directories(${target} PRIVATE $<BUILD_INTERFACE:${PROJECT_SOURCE_DIR}/runtime/include>)
  endif()
endfunction()
