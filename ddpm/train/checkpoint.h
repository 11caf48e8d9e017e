// checkpoint.h: the training checkpoint's format and every check a loader makes.
//
// A checkpoint is a safetensors file (ddpm/io/safetensors.h) holding the weights, the EMA
// weights ("ema."), Adam's moments ("adam.m.", "adam.v."), for an importance-sampled run the
// loss history ("timesteps.history", "timesteps.count"), and metadata: the model's config
// ("config.*"), the training config ("train.*", ddpm/train/config.h), the counters
// ("state.*") and the format tag. Trainer::save_checkpoint writes it; validate_checkpoint
// checks it for the trainer's resume, ./ckpt_hash and load_model alike.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "ddpm/io/safetensors.h"
#include "ddpm/model/unet.h"
#include "ddpm/train/config.h"

namespace ddpm {

// A checkpoint's counters ("state.*"). lr_history is empty unless a resume changed the
// learning rate: then it lists (step, lr) from the first step on, each lr in force from its
// step (the last one is train.lr); written as "state.lr_history" = "0:0.001,120:0.0005".
struct TrainState {
  int64_t step = 0, epoch = 0, position = 0, adam_steps = 0, ema_updates = 0, data_size = 0;
  std::vector<std::pair<int64_t, double>> lr_history;
};

// What a valid checkpoint holds, as validate_checkpoint read it.
struct CheckpointContents {
  UNetConfig model;
  TrainConfig train;
  TrainState state;
};

// Every check a training checkpoint gets, in one place (Trainer::load_checkpoint, ./ckpt_hash
// and load_model call it): the format tag and version; both configs (from_metadata) and
// their agreement; when `expect_model` / `expect_train` are given, each key equal to theirs
// (the error names the first that differs); every state.* key present and consistent; every
// tensor the model needs with its shape (timesteps.history / .count for an importance run),
// and no other; every tensor finite and adam.v.* >= 0, naming the tensor (load_model makes
// the same tensor checks on a weights file, through the same function). The one check it
// cannot make, the dataset's size against state.data_size, is the trainer's. Errors name
// st.source.
CheckpointContents validate_checkpoint(const SafeTensors& st, const UNetConfig* expect_model = nullptr,
                                       const TrainConfig* expect_train = nullptr);

// The metadata of a checkpoint: both configs, the format tag and version, and the counters.
std::map<std::string, std::string> checkpoint_metadata(const UNetConfig& model, const TrainConfig& train,
                                                       const TrainState& state);

// Loads the model weights of a checkpoint (EMA weights if present and use_ema), building
// the UNet from the checkpoint's config. Also returns the metadata, and whether the EMA
// weights were the ones loaded. What it accepts, checked before anything is copied: a
// training checkpoint (metadata "format") with all of validate_checkpoint's checks; or a
// weights file (config.* metadata; the weights, "ema."-prefixed EMA weights, or both). In
// both, the tensors are exactly the model's names and shapes (no extra tensor) and every
// value is finite; errors name the file and the tensor.
std::unique_ptr<UNet> load_model(const std::string& path, bool use_ema, std::map<std::string, std::string>* metadata,
                                 bool* loaded_ema = nullptr);

}  // namespace ddpm
