# Every external dependency of xdistill, found from system packages (Debian) or
# from the project's virtualenv (LibTorch). No sources are vendored.
find_package(Threads REQUIRED)

# LibTorch: from the torch wheel in .venv (share/cmake), or CMAKE_PREFIX_PATH.
if(NOT Torch_DIR)
  foreach(py ${PROJECT_SOURCE_DIR}/.venv/bin/python3 python3)
    execute_process(COMMAND ${py} -c "import torch;print(torch.utils.cmake_prefix_path)"
                    OUTPUT_VARIABLE _torch_prefix OUTPUT_STRIP_TRAILING_WHITESPACE
                    RESULT_VARIABLE _torch_rc ERROR_QUIET)
    if(_torch_rc EQUAL 0 AND _torch_prefix)
      list(APPEND CMAKE_PREFIX_PATH ${_torch_prefix})
      break()
    endif()
  endforeach()
endif()
find_package(Torch REQUIRED)
# The torch wheel ships its CUDA libraries as pip packages (nvidia/*/lib); the linker
# needs them to resolve libtorch_cuda's dependencies even where no GPU exists.
file(GLOB _nv_libdirs "${TORCH_INSTALL_PREFIX}/../nvidia/*/lib" "${TORCH_INSTALL_PREFIX}/../nvidia/cu13/lib")
foreach(d ${_nv_libdirs})
  string(APPEND CMAKE_EXE_LINKER_FLAGS " -Wl,-rpath-link,${d}")
endforeach()
string(APPEND CMAKE_EXE_LINKER_FLAGS " -Wl,-rpath,${TORCH_INSTALL_PREFIX}/lib")

find_package(yaml-cpp REQUIRED)
find_package(spdlog REQUIRED)
find_package(CLI11 REQUIRED)
find_package(nlohmann_json REQUIRED)
# PCRE2, utf8proc and zstd are found by header and library rather than pkg-config:
# on the GPU machine they come from Debian packages unpacked into a prefix, where
# the .pc files point at the wrong place.
function(xd_find_c_library target header libname)
  find_path(${target}_INCLUDE_DIR ${header} REQUIRED)
  find_library(${target}_LIBRARY NAMES ${libname} REQUIRED)
  add_library(xd::${target} INTERFACE IMPORTED)
  target_include_directories(xd::${target} INTERFACE ${${target}_INCLUDE_DIR})
  target_link_libraries(xd::${target} INTERFACE ${${target}_LIBRARY})
  message(STATUS "xdistill: ${target} ${${target}_LIBRARY}")
endfunction()
xd_find_c_library(pcre2 pcre2.h pcre2-8)
xd_find_c_library(utf8proc utf8proc.h utf8proc)
xd_find_c_library(zstd zstd.h zstd)

add_library(xd::yaml INTERFACE IMPORTED)
if(TARGET yaml-cpp::yaml-cpp)
  target_link_libraries(xd::yaml INTERFACE yaml-cpp::yaml-cpp)
else()
  target_link_libraries(xd::yaml INTERFACE yaml-cpp)
endif()
add_library(xd::spdlog INTERFACE IMPORTED)
target_link_libraries(xd::spdlog INTERFACE spdlog::spdlog)
add_library(xd::json INTERFACE IMPORTED)
target_link_libraries(xd::json INTERFACE nlohmann_json::nlohmann_json)
add_library(xd::cli11 INTERFACE IMPORTED)
target_link_libraries(xd::cli11 INTERFACE CLI11::CLI11)

if(XDISTILL_TESTS)
  find_package(GTest REQUIRED)
endif()

# cuDNN's graph API (cudnn_frontend, header-only, from the nvidia-cudnn-frontend wheel in
# .venv) with cudnn.h and libcudnn from torch's own nvidia-cudnn wheel: the window
# attention's cuDNN backend (src/ops/cudnn_window.cpp). Optional: without the headers the
# window keeps flash attention (a message says so).
set(XD_CUDNN_FRONTEND OFF)
if(XDISTILL_WITH_CUDA)
  find_path(XD_CUDNN_FRONTEND_INCLUDE cudnn_frontend.h HINTS "${TORCH_INSTALL_PREFIX}/../include")
  find_path(XD_CUDNN_INCLUDE cudnn.h HINTS "${TORCH_INSTALL_PREFIX}/../nvidia/cudnn/include")
  find_library(XD_CUDNN_LIBRARY NAMES libcudnn.so.9 cudnn HINTS "${TORCH_INSTALL_PREFIX}/../nvidia/cudnn/lib")
  if(XD_CUDNN_FRONTEND_INCLUDE AND XD_CUDNN_INCLUDE AND XD_CUDNN_LIBRARY)
    set(XD_CUDNN_FRONTEND ON)
    get_filename_component(_cudnn_libdir "${XD_CUDNN_LIBRARY}" DIRECTORY)
    string(APPEND CMAKE_EXE_LINKER_FLAGS " -Wl,-rpath,${_cudnn_libdir}")
    message(STATUS "xdistill: cuDNN graph API ${XD_CUDNN_FRONTEND_INCLUDE}, ${XD_CUDNN_LIBRARY}")
  else()
    message(STATUS "xdistill: no cudnn_frontend (pip install nvidia-cudnn-frontend): the window attention has no cuDNN backend")
  endif()
endif()
