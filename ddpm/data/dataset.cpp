#include "ddpm/data/dataset.h"

#include <sys/stat.h>

#include "ddpm/core/check.h"
#include "ddpm/data/cifar10.h"
#include "ddpm/data/image_folder.h"
#include "ddpm/data/mnist.h"

namespace ddpm {

void check_dataset_name(const std::string& name) {
  DDPM_CHECK(name == "mnist" || name == "fashion" || name == "cifar10" || name == "folder",
             "unknown --dataset '" << name << "': use mnist, fashion, cifar10 or folder");
}

std::string dataset_title(const std::string& name, const std::string& dir) {
  if (name == "mnist") return "MNIST";
  if (name == "fashion") return "Fashion-MNIST";
  if (name == "cifar10") return "CIFAR-10";
  return "the images in " + dir;
}

void bytes_to_unit_range(float* out, const uint8_t* pixels, size_t n) {
  for (size_t i = 0; i < n; i++) out[i] = pixels[i] / 127.5f - 1.0f;  // [0, 255] -> [-1, 1]
}

// A dataset of fixed size refuses an image size or channel count other than its own:
// they apply to folders only.
static void check_fixed_size(const std::string& name, const DatasetOptions& options, int64_t size, int channels) {
  DDPM_CHECK(options.image_size == 0 || options.image_size == size,
             "--dataset " << name << " has " << size << "x" << size << " images; an image size of "
                          << options.image_size << " applies to --dataset folder only");
  DDPM_CHECK(options.channels == 0 || options.channels == channels,
             "--dataset " << name << " has " << channels << "-channel images; " << options.channels
                          << " channels apply to --dataset folder only");
}

Dataset load_dataset(const std::string& name, const std::string& dir, const DatasetOptions& options,
                     const std::string& split) {
  check_dataset_name(name);
  DDPM_CHECK(split == "train" || split == "test", "load_dataset: split '" << split << "': use train or test");
  if (name == "folder") {
    DDPM_CHECK(!dir.empty(), "--dataset folder needs the folder of images: pass --data DIR");
    return load_image_folder(dir, options.image_size, options.channels);  // one split: the folder
  }
  if (name == "cifar10") {
    check_fixed_size(name, options, 32, 3);
    return load_cifar10(dir.empty() ? "data/cifar10" : dir, split);
  }
  check_fixed_size(name, options, 28, 1);
  std::string d = dir;
  if (d.empty()) {
    d = name == "mnist" ? "data/mnist" : kFashionMnistDir;
    struct stat st;
    DDPM_CHECK(name != "fashion" || stat(d.c_str(), &st) == 0,
               "Fashion-MNIST not found at " << d
                                             << ": install Debian's package (apt-get install -y dataset-fashion-mnist)"
                                                " or pass --data DIR");
  }
  MnistSplit images = load_mnist(d, split);
  return Dataset{images.images, images.labels};
}

}  // namespace ddpm
