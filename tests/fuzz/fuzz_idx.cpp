// libFuzzer harness: the IDX reader (MNIST images and labels).
//
// Any input must give a tensor or a ddpm::Error: an uncaught exception of another type
// (std::bad_alloc from an unchecked size, std::out_of_range), a crash, an out-of-bounds
// read (ASan) or undefined behaviour (UBSan) is a finding. `make fuzz` runs it.
#include <cstddef>
#include <cstdint>

#include "ddpm/core/check.h"
#include "ddpm/data/mnist.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    ddpm::Tensor images = ddpm::parse_idx_images(data, size, "fuzz-images-idx3-ubyte");
    // Touch every value: a reader that announced more than it filled would show here.
    volatile float sum = 0;
    for (int64_t i = 0; i < images.numel(); i++) sum = sum + images[i];
  } catch (const ddpm::Error&) {
  }
  try {
    std::vector<uint8_t> labels = ddpm::parse_idx_labels(data, size, "fuzz-labels-idx1-ubyte");
    volatile unsigned sum = 0;
    for (uint8_t l : labels) sum = sum + l;
  } catch (const ddpm::Error&) {
  }
  return 0;
}
