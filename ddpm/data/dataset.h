// dataset.h: a training set in memory, and the datasets the tools load by name.
//
//   --dataset mnist     the four IDX files in --data (default data/mnist; `make data`)
//   --dataset fashion   Fashion-MNIST, IDX, from --data or Debian's dataset-fashion-mnist
//   --dataset cifar10   CIFAR-10's binary batches in --data (default data/cifar10;
//                       cifar10.h), 32x32 RGB
//   --dataset folder    a folder of PNG/PGM/PPM images in --data, optionally one sub-folder
//                       per class (image_folder.h), resized to options.image_size and
//                       converted to options.channels
// docs/data.md describes each format and what its reader checks.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "ddpm/core/tensor.h"

namespace ddpm {

// Images [N, C, H, W] in [-1, 1] and their labels, 0..num_classes-1. MNIST, Fashion-MNIST
// and CIFAR-10 have 10 classes; a folder has 1 (no class sub-folders: every label 0) or
// one per sub-folder, up to 255. A conditional model has 10 classes and uses label 10 for
// "no class", so the Trainer refuses --conditional with num_classes > 10, or with 1.
struct Dataset {
  Tensor images;
  std::vector<uint8_t> labels;
  int64_t num_classes = 10;
  int64_t size() const { return images.defined() ? images.size(0) : 0; }
};

// For --dataset folder: the side of the square images and their channel count (1 or 3;
// 0: the images' own, which must then agree). The other datasets have fixed sizes
// (28x28x1, 32x32x3); a value given for them must match.
struct DatasetOptions {
  int64_t image_size = 0;
  int channels = 0;
};

// Throws, naming the flag, unless `name` is a dataset load_dataset knows.
void check_dataset_name(const std::string& name);
// Split "train" or "test" of dataset `name` from `dir` (empty: the dataset's default folder;
// a folder dataset has none). A folder has one split: every image in it, for both.
Dataset load_dataset(const std::string& name, const std::string& dir, const DatasetOptions& options = {},
                     const std::string& split = "train");

// How reports name the dataset: "MNIST", "Fashion-MNIST", "CIFAR-10" or "the images in DIR".
std::string dataset_title(const std::string& name, const std::string& dir);

// 8-bit pixels to [-1, 1]: x / 127.5 - 1 (the data scaling of Ho et al. 2020, Sec. 3.3),
// so 0 -> -1 and 255 -> 1 exactly. Every reader of 8-bit data uses it.
void bytes_to_unit_range(float* out, const uint8_t* pixels, size_t n);

}  // namespace ddpm
