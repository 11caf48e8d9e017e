// tests/io/error_of.h: the message of the ddpm::Error a call throws, for tests that
// check many bad inputs of one reader against the words of their errors.
//
//   CHECK(testing::error_of([&] { decode_png(b.data(), b.size(), "t.png"); }).find("bad CRC") != std::string::npos);
#pragma once

#include <string>

#include "ddpm/core/check.h"

namespace ddpm {
namespace testing {

// The what() of the ddpm::Error that f throws, or "" when f returns.
template <typename F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

}  // namespace testing
}  // namespace ddpm
