// tests/fuzz/fuzz_file.h: a fuzz input as a file, so that a harness drives the readers'
// file entry points (load_safetensors, read_idx_images: InputFile's fstat, then checked
// reads of byte ranges) and not only their in-memory twins.
//
// One memfd (a regular file in memory: no disk, a real st_size) is rewritten for each
// input and named by its /proc/self/fd path. returns(f) runs one entry point and says
// whether it gave a result or a ddpm::Error; both_read runs two that must agree.
#pragma once

#include <sys/mman.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "ddpm/core/check.h"

namespace ddpm {
namespace fuzzing {

inline std::string fuzz_file(const uint8_t* data, size_t size) {
  static const int fd = memfd_create("fuzz-input", MFD_CLOEXEC);
  if (fd < 0 || ftruncate(fd, 0) != 0) std::abort();
  for (size_t done = 0; done < size;) {
    ssize_t n = pwrite(fd, data + done, size - done, static_cast<off_t>(done));
    if (n <= 0) std::abort();
    done += static_cast<size_t>(n);
  }
  return "/proc/self/fd/" + std::to_string(fd);
}

// Runs f: true when it returns, false when it throws ddpm::Error. Anything else it
// throws escapes, which libFuzzer reports as a finding.
template <typename F>
bool returns(F&& f) {
  try {
    f();
    return true;
  } catch (const Error&) {
    return false;
  }
}

// Runs a reader's two entry points on one input (in memory, and as a file): both must
// give a result or both an error (else abort: a finding). True when both gave a result.
template <typename InMemory, typename FromFile>
bool both_read(InMemory&& in_memory, FromFile&& from_file) {
  const bool parsed = returns(in_memory), read = returns(from_file);
  if (parsed != read) std::abort();  // the two entry points disagree
  return parsed;
}

}  // namespace fuzzing
}  // namespace ddpm
