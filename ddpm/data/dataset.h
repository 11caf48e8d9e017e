// dataset.h: a training set in memory, and the datasets the tools load by name.
//
//   --dataset mnist     the four IDX files in --data (default data/mnist; `make data`)
//   --dataset fashion   Fashion-MNIST, IDX, from --data or Debian's dataset-fashion-mnist
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "ddpm/core/tensor.h"

namespace ddpm {

// Images [N, C, H, W] in [-1, 1] and their labels (0..9).
struct Dataset {
  Tensor images;
  std::vector<uint8_t> labels;
  int64_t size() const { return images.defined() ? images.size(0) : 0; }
};

// Throws, naming the flag, unless `name` is a dataset load_dataset knows.
void check_dataset_name(const std::string& name);
// The training split of dataset `name` from `dir` (empty: the dataset's default folder).
Dataset load_dataset(const std::string& name, const std::string& dir);

}  // namespace ddpm
