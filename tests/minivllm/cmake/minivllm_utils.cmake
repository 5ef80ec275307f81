# Helper functions for the minivllm test project (the counterpart of vLLM's
# cmake/utils.cmake, written from scratch and much smaller).

# Fail early, with a message that says what to do, when VLLM_PYTHON_EXECUTABLE
# is missing, not runnable, the wrong version, or has no development headers.
# find_package(Python ... REQUIRED) would fail too, but less readably.
function(minivllm_check_python exe)
  if(exe STREQUAL "")
    message(FATAL_ERROR
      "VLLM_PYTHON_EXECUTABLE is not set. Pass -DVLLM_PYTHON_EXECUTABLE=/path/to/python "
      "(the interpreter of the environment vLLM is installed into).")
  endif()
  if(NOT EXISTS "${exe}" OR IS_DIRECTORY "${exe}")
    message(FATAL_ERROR "VLLM_PYTHON_EXECUTABLE='${exe}' does not exist or is not a file.")
  endif()
  execute_process(
    COMMAND "${exe}" -c
      "import os, sys, sysconfig; inc = sysconfig.get_paths()['include']; print('%d.%d;%d;%s' % (sys.version_info[0], sys.version_info[1], os.path.isfile(os.path.join(inc, 'Python.h')), inc))"
    RESULT_VARIABLE _rc
    OUTPUT_VARIABLE _out
    ERROR_VARIABLE _err
    OUTPUT_STRIP_TRAILING_WHITESPACE)
  if(NOT _rc EQUAL 0)
    message(FATAL_ERROR
      "VLLM_PYTHON_EXECUTABLE='${exe}' could not be run as a Python interpreter "
      "(exit status: ${_rc}): ${_err}")
  endif()
  if(NOT _out MATCHES "^[0-9]+\\.[0-9]+;[01];")
    message(FATAL_ERROR
      "VLLM_PYTHON_EXECUTABLE='${exe}' does not behave like a Python interpreter "
      "(output: '${_out}', errors: '${_err}')")
  endif()
  list(GET _out 0 _version)
  list(GET _out 1 _has_headers)
  list(GET _out 2 _include)
  if(_version VERSION_LESS 3.10 OR _version VERSION_GREATER_EQUAL 3.15)
    message(FATAL_ERROR
      "VLLM_PYTHON_EXECUTABLE='${exe}' is Python ${_version}; Python 3.10 to 3.14 is required.")
  endif()
  if(NOT _has_headers)
    message(FATAL_ERROR
      "VLLM_PYTHON_EXECUTABLE='${exe}' (Python ${_version}) has no development headers "
      "(no Python.h in ${_include}); install the python${_version}-dev package or equivalent.")
  endif()
endfunction()

# Turn a torch-style arch list ("8.0;9.0+PTX", "7.5 8.6", "8.0,9.0a") into
# CMake CUDA_ARCHITECTURES entries ("80;90", "75;86", "80;90a"). +PTX is
# dropped: this project never embeds PTX on purpose.
function(minivllm_torch_arch_list_to_cmake arch_list out_var)
  string(REPLACE "," ";" _list "${arch_list}")
  string(REPLACE " " ";" _list "${_list}")
  set(_result "")
  foreach(_arch IN LISTS _list)
    string(STRIP "${_arch}" _arch)
    if(_arch STREQUAL "")
      continue()
    endif()
    string(REGEX REPLACE "\\+PTX$" "" _arch "${_arch}")
    if(NOT _arch MATCHES "^([0-9]+)\\.([0-9])([af]?)$")
      message(FATAL_ERROR
        "Cannot parse '${_arch}' in TORCH_CUDA_ARCH_LIST='${arch_list}' "
        "(expected entries like 8.0, 9.0a or 9.0+PTX)")
    endif()
    list(APPEND _result "${CMAKE_MATCH_1}${CMAKE_MATCH_2}${CMAKE_MATCH_3}")
  endforeach()
  list(REMOVE_DUPLICATES _result)
  set(${out_var} "${_result}" PARENT_SCOPE)
endfunction()

# Ask nvcc which virtual architectures it supports (compute_75 -> 75), once
# per configure run.
function(minivllm_nvcc_supported_archs nvcc out_var)
  execute_process(
    COMMAND "${nvcc}" --list-gpu-arch
    RESULT_VARIABLE _rc
    OUTPUT_VARIABLE _out
    ERROR_VARIABLE _err)
  if(NOT _rc EQUAL 0)
    message(FATAL_ERROR "'${nvcc} --list-gpu-arch' failed (${_rc}): ${_err}")
  endif()
  string(REGEX MATCHALL "compute_[0-9]+[af]?" _matches "${_out}")
  set(_result "")
  foreach(_m IN LISTS _matches)
    string(REPLACE "compute_" "" _m "${_m}")
    list(APPEND _result "${_m}")
  endforeach()
  list(REMOVE_DUPLICATES _result)
  set(${out_var} "${_result}" PARENT_SCOPE)
endfunction()

# Keep the requested archs nvcc supports. Arch-specific variants (90a, 100f)
# count as supported when their base number is.
function(minivllm_intersect_archs requested supported out_var)
  set(_result "")
  foreach(_arch IN LISTS requested)
    string(REGEX REPLACE "[af]$" "" _base "${_arch}")
    if(_base IN_LIST supported)
      list(APPEND _result "${_arch}")
    else()
      message(STATUS "Dropping CUDA architecture ${_arch}: not supported by this nvcc")
    endif()
  endforeach()
  set(${out_var} "${_result}" PARENT_SCOPE)
endfunction()

# Define one Python extension module the way vLLM's define_extension_target
# does: a MODULE library using the limited API, named <name>.abi3.so and
# installed into vllm/ under a component of its own name.
function(minivllm_add_extension name)
  cmake_parse_arguments(PARSE_ARGV 1 ARG "" "" "SOURCES;CUDA_ARCHITECTURES;CUDA_FLAGS")
  add_library(${name} MODULE ${ARG_SOURCES})
  target_link_libraries(${name} PRIVATE Python::Module)
  target_compile_definitions(${name} PRIVATE
    Py_LIMITED_API=0x030A0000
    "TORCH_EXTENSION_NAME=${name}")
  set_target_properties(${name} PROPERTIES
    PREFIX ""
    SUFFIX ".abi3.so"
    CXX_STANDARD 17
    CXX_STANDARD_REQUIRED ON
    CXX_VISIBILITY_PRESET hidden
    VISIBILITY_INLINES_HIDDEN ON)
  if(ARG_CUDA_ARCHITECTURES)
    set_target_properties(${name} PROPERTIES
      CUDA_ARCHITECTURES "${ARG_CUDA_ARCHITECTURES}"
      CUDA_STANDARD 17
      CUDA_STANDARD_REQUIRED ON
      CUDA_VISIBILITY_PRESET hidden
      # The default, spelled out: the static runtime lets the module import
      # on machines without a GPU driver.
      CUDA_RUNTIME_LIBRARY Static)
  endif()
  foreach(_flag IN LISTS ARG_CUDA_FLAGS)
    target_compile_options(${name} PRIVATE "$<$<COMPILE_LANGUAGE:CUDA>:${_flag}>")
  endforeach()
  install(TARGETS ${name} LIBRARY DESTINATION vllm COMPONENT ${name})
endfunction()
