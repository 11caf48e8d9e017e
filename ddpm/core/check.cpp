#include "ddpm/core/check.h"

namespace ddpm {

void fail(const char* file, int line, const std::string& message) {
  std::string where = file;
  size_t slash = where.rfind("ddpm/");
  if (slash != std::string::npos) where = where.substr(slash);
  throw Error(where + ":" + std::to_string(line) + ": " + message);
}

}  // namespace ddpm
