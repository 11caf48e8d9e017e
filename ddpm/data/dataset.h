// dataset.h: a training set in memory, and the datasets the tools load by name.
//
//   --dataset mnist     the four IDX files in --data (default data/mnist; `make data`)
//   --dataset fashion   Fashion-MNIST, IDX, from --data or Debian's dataset-fashion-mnist
// CIFAR-10's binary batches: cifar10.h.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "ddpm/core/tensor.h"

namespace ddpm {

// Images [N, C, H, W] in [-1, 1] and their labels, 0..num_classes-1 (MNIST, Fashion-MNIST
// and CIFAR-10 have 10 classes).
struct Dataset {
  Tensor images;
  std::vector<uint8_t> labels;
  int64_t num_classes = 10;
  int64_t size() const { return images.defined() ? images.size(0) : 0; }
};

// Throws, naming the flag, unless `name` is a dataset load_dataset knows.
void check_dataset_name(const std::string& name);
// The training split of dataset `name` from `dir` (empty: the dataset's default folder).
Dataset load_dataset(const std::string& name, const std::string& dir);

// 8-bit pixels to [-1, 1]: x / 127.5 - 1 (the data scaling of Ho et al. 2020, Sec. 3.3),
// so 0 -> -1 and 255 -> 1 exactly. Every reader of 8-bit data uses it.
void bytes_to_unit_range(float* out, const uint8_t* pixels, size_t n);

}  // namespace ddpm
