// mnist.h: the IDX file format and the MNIST / Fashion-MNIST datasets.
//
// IDX (http://yann.lecun.com/exdb/mnist/): a big-endian header, then unsigned bytes.
//   images: magic 0x00000803 (ubyte data, 3 dims), N, rows, cols, then N*rows*cols pixels
//   labels: magic 0x00000801 (ubyte data, 1 dim),  N,             then N labels
// The readers read the header first and check the magic, the dimension count, that the
// announced size is at most kIdxMaxDataBytes and that the file holds exactly the bytes
// the header announces, BEFORE allocating anything; then they read that much and no
// more. Files ending in ".gz" are decompressed with the system's gzip as a stream: its
// size is unknown until read, so the header's (bounded) size caps what is read, and
// output beyond it (a gzip bomb) is an error. What has no real size (/dev/zero, a pipe)
// is refused.
//
// Images come back as float [N, 1, rows, cols] scaled to [-1, 1]: x / 127.5 - 1 (the
// data scaling of Ho et al. 2020, Sec. 3.3). Labels as bytes.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "ddpm/core/tensor.h"

namespace ddpm {

// The most data an IDX header may announce: 1 GiB of bytes (4 GiB as float images),
// about twice EMNIST's largest split (547 MB); MNIST's training images are 47 MB.
constexpr uint64_t kIdxMaxDataBytes = uint64_t(1) << 30;

constexpr const char* kFashionMnistDir = "/usr/share/datasets/fashion-mnist";  // Debian's dataset-fashion-mnist

Tensor parse_idx_images(const uint8_t* bytes, size_t size, const std::string& source);  // [N, 1, rows, cols]
std::vector<uint8_t> parse_idx_labels(const uint8_t* bytes, size_t size, const std::string& source);
Tensor read_idx_images(const std::string& path);
std::vector<uint8_t> read_idx_labels(const std::string& path);

struct MnistSplit {
  Tensor images;                // [N, 1, 28, 28], in [-1, 1]
  std::vector<uint8_t> labels;  // N labels in 0..9
};

// Reads an image file and a label file and checks that they go together: the same N,
// labels below 10.
MnistSplit load_mnist_files(const std::string& images_path, const std::string& labels_path);

// split "train" or "test": finds {train,t10k}-{images-idx3,labels-idx1}-ubyte in dir,
// also spelled with '.' before "idx" and/or with ".gz". The error lists what it looked
// for and how to get the files.
MnistSplit load_mnist(const std::string& dir, const std::string& split);

}  // namespace ddpm
