// check.h: the one error type and the always-on check macro.
//
// DDPM_CHECK(cond, msg << ...) throws ddpm::Error("file:line: op: message") when cond
// is false. It is always on: shape errors, bad files and bad flags all go through it,
// so tests can assert on misuse. Kernels check their sizes once, at the tape wrapper,
// and index nothing they were not given.
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>

namespace ddpm {

struct Error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

[[noreturn]] void fail(const char* file, int line, const std::string& message);

}  // namespace ddpm

#define DDPM_CHECK(cond, ...)                                  \
  do {                                                         \
    if (!(cond)) {                                             \
      std::ostringstream ddpm_check_os_;                       \
      ddpm_check_os_ << __VA_ARGS__;                           \
      ::ddpm::fail(__FILE__, __LINE__, ddpm_check_os_.str()); \
    }                                                          \
  } while (0)

#define DDPM_FAIL(...) DDPM_CHECK(false, __VA_ARGS__)
