# Every external dependency of xdistill, found from system packages (Debian) or
# from the project's virtualenv (LibTorch). No sources are vendored.
find_package(Threads REQUIRED)
find_package(PkgConfig REQUIRED)

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
pkg_check_modules(PCRE2 REQUIRED IMPORTED_TARGET libpcre2-8)
pkg_check_modules(UTF8PROC REQUIRED IMPORTED_TARGET libutf8proc)
pkg_check_modules(ZSTD REQUIRED IMPORTED_TARGET libzstd)

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
add_library(xd::pcre2 INTERFACE IMPORTED)
target_link_libraries(xd::pcre2 INTERFACE PkgConfig::PCRE2)
add_library(xd::utf8proc INTERFACE IMPORTED)
target_link_libraries(xd::utf8proc INTERFACE PkgConfig::UTF8PROC)
add_library(xd::zstd INTERFACE IMPORTED)
target_link_libraries(xd::zstd INTERFACE PkgConfig::ZSTD)

if(XDISTILL_TESTS)
  find_package(GTest REQUIRED)
endif()
