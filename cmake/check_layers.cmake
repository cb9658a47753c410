# The layers, enforced: each folder may include only its own headers (a name without a folder)
# and those of the layers below it. Run by the build (target check_layers, part of ALL), so that a
# violation fails it; tests/layers checks that a deliberate one does.
#   cmake -DROOT=<tree> [-DSTAMP=<file>] -P cmake/check_layers.cmake
# What may be included, by folder (prefixes of the quoted include path, comma-separated):
set(_layers
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
  "lease-broker=protocol/,net/,auth/,cli/"
  "mpi-interop=rfaas/client.hpp,rfaas/rfaas.h,rfaas/rfaas_mpi.h"
  "apps=rfaas/client.hpp,rfaas/rfaas.h,rfaas/rfaas_mpi.h"
  "functions=rfaas/function.h")

if(NOT ROOT)
  message(FATAL_ERROR "check_layers: -DROOT=<source tree> is required")
endif()
set(_violations "")
foreach(_layer IN LISTS _layers)
  string(FIND "${_layer}" "=" _eq)
  string(SUBSTRING "${_layer}" 0 ${_eq} _dir)
  math(EXPR _from "${_eq} + 1")
  string(SUBSTRING "${_layer}" ${_from} -1 _allowed_text)
  string(REPLACE "," " " _shown "${_allowed_text}")
  string(REPLACE "," ";" _allowed "${_allowed_text}")
  file(GLOB_RECURSE _files "${ROOT}/${_dir}/*.cpp" "${ROOT}/${_dir}/*.hpp" "${ROOT}/${_dir}/*.c" "${ROOT}/${_dir}/*.h")
  foreach(_file IN LISTS _files)
    file(STRINGS "${_file}" _includes REGEX "^[ \t]*#[ \t]*include[ \t]*\"")
    foreach(_line IN LISTS _includes)
      string(REGEX REPLACE "^[ \t]*#[ \t]*include[ \t]*\"([^\"]*)\".*" "\\1" _path "${_line}")
      if(NOT _path MATCHES "/")
        continue()  # a header of its own folder
      endif()
      set(_ok FALSE)
      foreach(_prefix IN LISTS _allowed)
        if(NOT _prefix STREQUAL "" AND _path MATCHES "^${_prefix}")
          set(_ok TRUE)
        endif()
      endforeach()
      if(NOT _ok)
        file(RELATIVE_PATH _rel "${ROOT}" "${_file}")
        string(APPEND _violations "  ${_rel} includes \"${_path}\" (${_dir} may include: ${_shown})\n")
      endif()
    endforeach()
  endforeach()
endforeach()
if(_violations)
  message(FATAL_ERROR "layer violations (cmake/check_layers.cmake):\n${_violations}")
endif()
if(STAMP)
  file(WRITE "${STAMP}" "layers ok\n")
endif()
