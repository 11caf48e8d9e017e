// libFuzzer harness: the CIFAR-10 binary reader.
//
// Each input is read twice: in memory (parse_cifar10) and as a file (read_cifar10_file:
// the size checked first, then the records in pieces); the two must agree, label for
// label and value for value, and every value must lie in [-1, 1]. Only ddpm::Error may
// escape: anything else, a crash or a sanitizer report is a finding. `make fuzz` runs it.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>

#include "ddpm/core/check.h"
#include "ddpm/data/cifar10.h"
#include "tests/fuzz/fuzz_file.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace ddpm;
  const std::string path = fuzzing::fuzz_file(data, size);
  Dataset parsed, read;
  if (!fuzzing::both_read([&] { parsed = parse_cifar10(data, size, "fuzz_batch.bin"); },
                          [&] { read = read_cifar10_file(path); }))
    return 0;
  if (parsed.images.shape() != read.images.shape() || parsed.labels != read.labels ||
      std::memcmp(parsed.images.data(), read.images.data(), sizeof(float) * size_t(parsed.images.numel())) != 0)
    std::abort();
  if (int64_t(parsed.labels.size()) != parsed.size()) std::abort();
  for (uint8_t label : parsed.labels)
    if (label > 9) std::abort();
  for (int64_t i = 0; i < parsed.images.numel(); i++)
    if (!(parsed.images[i] >= -1.0f && parsed.images[i] <= 1.0f)) std::abort();
  return 0;
}
