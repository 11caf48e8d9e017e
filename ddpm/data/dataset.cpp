#include "ddpm/data/dataset.h"

#include <sys/stat.h>

#include "ddpm/core/check.h"
#include "ddpm/data/mnist.h"

namespace ddpm {

void check_dataset_name(const std::string& name) {
  DDPM_CHECK(name == "mnist" || name == "fashion", "unknown --dataset '" << name << "': use mnist or fashion");
}

void bytes_to_unit_range(float* out, const uint8_t* pixels, size_t n) {
  for (size_t i = 0; i < n; i++) out[i] = pixels[i] / 127.5f - 1.0f;  // [0, 255] -> [-1, 1]
}

Dataset load_dataset(const std::string& name, const std::string& dir) {
  check_dataset_name(name);
  std::string d = dir;
  if (d.empty()) {
    d = name == "mnist" ? "data/mnist" : kFashionMnistDir;
    struct stat st;
    DDPM_CHECK(name != "fashion" || stat(d.c_str(), &st) == 0,
               "Fashion-MNIST not found at " << d
                                             << ": install Debian's package (apt-get install -y dataset-fashion-mnist)"
                                                " or pass --data DIR");
  }
  MnistSplit split = load_mnist(d, "train");
  return Dataset{split.images, split.labels};
}

}  // namespace ddpm
