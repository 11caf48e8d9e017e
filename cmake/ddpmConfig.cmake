# find_package(ddpm) for the installed library (docs/library.md): the imported target
# ddpm::ddpm, with its include folder, C++17, the SIMD flags the library was built with,
# and Threads. Installed as is by `make install` and by CMake's install; each writes its own
# ddpmTargets.cmake (CMake's exported one, or cmake/ddpmTargets-make.cmake.in).
include(CMakeFindDependencyMacro)
find_dependency(Threads)
include("${CMAKE_CURRENT_LIST_DIR}/ddpmTargets.cmake")
