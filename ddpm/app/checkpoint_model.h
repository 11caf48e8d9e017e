// checkpoint_model.h: a checkpoint's model, ready to sample, as ./sample and ./eval load it.
//
//   LoadedModel m = load_checkpoint_model("out/ckpt-00003400.safetensors", /*use_ema=*/true);
//   m.model, m.schedule, m.predict   -> unet_model(*m.model, m.schedule, m.predict, sigma)
//
// The weights are load_model's (ddpm/train/checkpoint.h: every check, errors name the file).
// The training config (train.*) is read with the trainer's own checks (every key, every
// bound: T in 1..kMaxT), and the schedule is built from its train.schedule and train.T.
#pragma once

#include <map>
#include <memory>
#include <optional>
#include <string>

#include "ddpm/diffusion/schedule.h"
#include "ddpm/extensions/prediction_targets.h"
#include "ddpm/model/unet.h"
#include "ddpm/train/config.h"

namespace ddpm {

struct LoadedModel {
  std::unique_ptr<UNet> model;
  std::map<std::string, std::string> metadata;
  bool ema = false;                                  // the EMA weights were the ones loaded
  std::optional<TrainConfig> train;                  // absent: a weights file without train.*
  Schedule schedule;                                 // train's schedule; empty without train
  PredictionTarget predict = PredictionTarget::eps;  // train.predict (eps when absent)
};

// The model of `path` (its EMA weights when use_ema and the file has them). A file whose
// metadata has no train.* key (a weights file, as tools/torch_reference.py writes) is
// refused naming the file when require_train_config; otherwise it loads without `train`
// and `schedule`, and the caller chooses the schedule (./sample's --schedule and --T).
LoadedModel load_checkpoint_model(const std::string& path, bool use_ema, bool require_train_config = true);

}  // namespace ddpm
