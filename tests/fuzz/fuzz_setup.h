// tests/fuzz/fuzz_setup.h: the training setup behind the safetensors harness's seed
// checkpoint, shared by the harness and tests/fuzz/make_corpus.cpp.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "ddpm/train/trainer.h"
#include "ddpm/model/unet.h"

namespace ddpm {
namespace fuzzing {

// A U-Net small enough that its checkpoint (weights, EMA, Adam moments) is a ~20 KB
// seed: one level of 4 channels on 4x4 images, with attention.
inline UNetConfig fuzz_unet_config() {
  UNetConfig c;
  c.name = "fuzz";
  c.image_size = 4;
  c.ch = 4;
  c.ch_mult = {1};
  c.num_res_blocks = 1;
  c.attn_resolutions = {4};
  c.groups = 1;
  return c;
}

inline TrainConfig fuzz_train_config() {
  TrainConfig c;
  c.model = "minimal";
  c.batch = 2;
  c.T = 10;
  c.warmup = 2;
  return c;
}

// 8 images of 4x4: a bright pixel at a position given by the label.
inline Dataset fuzz_dataset() {
  Dataset d{Tensor::full({8, 1, 4, 4}, -1.0f), {}};
  for (int64_t n = 0; n < 8; n++) {
    d.images[n * 16 + n * 2] = 1.0f;
    d.labels.push_back(static_cast<uint8_t>(n));
  }
  return d;
}

inline std::vector<std::pair<std::string, Shape>> fuzz_parameter_shapes() {
  UNet model(fuzz_unet_config());
  std::vector<std::pair<std::string, Shape>> shapes;
  for (Parameter* p : model.parameters()) shapes.emplace_back(p->name, p->var->value.shape());
  return shapes;
}

}  // namespace fuzzing
}  // namespace ddpm
