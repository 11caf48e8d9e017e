// libFuzzer harness: the IDX reader (MNIST images and labels).
//
// Any input must give a tensor or a ddpm::Error: an uncaught exception of another type
// (std::bad_alloc from an unchecked size, std::out_of_range), a crash, an out-of-bounds
// read (ASan) or undefined behaviour (UBSan) is a finding. Each input is read twice: in
// memory (parse_idx_*) and as a file (read_idx_*, the header first, then the data it
// announces); the two must agree, value for value. `make fuzz` runs it.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "ddpm/core/check.h"
#include "ddpm/data/mnist.h"
#include "tests/fuzz/fuzz_file.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = ddpm::fuzzing::fuzz_file(data, size);
  ddpm::Tensor images, file_images;
  bool parsed = false, read = false;
  try {
    images = ddpm::parse_idx_images(data, size, "fuzz-images-idx3-ubyte");
    parsed = true;
    // Touch every value: a reader that announced more than it filled would show here.
    volatile float sum = 0;
    for (int64_t i = 0; i < images.numel(); i++) sum = sum + images[i];
  } catch (const ddpm::Error&) {
  }
  try {
    file_images = ddpm::read_idx_images(path);
    read = true;
  } catch (const ddpm::Error&) {
  }
  if (parsed != read) std::abort();  // the two entry points disagree
  if (parsed && (images.shape() != file_images.shape() ||
                 std::memcmp(images.data(), file_images.data(), images.numel() * sizeof(float)) != 0))
    std::abort();

  std::vector<uint8_t> labels, file_labels;
  parsed = read = false;
  try {
    labels = ddpm::parse_idx_labels(data, size, "fuzz-labels-idx1-ubyte");
    parsed = true;
  } catch (const ddpm::Error&) {
  }
  try {
    file_labels = ddpm::read_idx_labels(path);
    read = true;
  } catch (const ddpm::Error&) {
  }
  if (parsed != read || labels != file_labels) std::abort();
  return 0;
}
