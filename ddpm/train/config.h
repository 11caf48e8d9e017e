// config.h: THE training config, every field once in one table (DDPM_TRAIN_CONFIG_FIELDS):
// its type, default, ./train_mnist flag, bounds, metadata rule and help. The table drives
// the TrainConfig struct, the flags (ddpm/app/config_flags.h), the checkpoint's "train.*"
// metadata in both directions and validate(). Nothing else lists the fields.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <type_traits>

#include "ddpm/diffusion/diffusion.h"
#include "ddpm/diffusion/schedule.h"
#include "ddpm/extensions/objectives.h"
#include "ddpm/extensions/prediction_targets.h"
#include "ddpm/model/unet.h"
#include "ddpm/train/optim.h"

namespace ddpm {

// How t is drawn in training: uniform (Algorithm 1, line 3) or importance-sampled
// (importance_sampling.h).
enum class TimestepSampling { uniform, importance };

// Bounds of a numeric config field: lo <= v <= hi (lo < v when lo_open, v < hi when hi_open).
struct FieldBounds {
  double lo, hi;
  bool lo_open, hi_open;
};
constexpr double kUnbounded = 1e300;
constexpr FieldBounds closed(double lo, double hi) { return {lo, hi, false, false}; }
constexpr FieldBounds at_least(double lo) { return {lo, kUnbounded, false, false}; }
constexpr FieldBounds above(double lo) { return {lo, kUnbounded, true, false}; }
constexpr FieldBounds half_open(double lo, double hi) { return {lo, hi, false, true}; }
constexpr FieldBounds kNoBounds{-kUnbounded, kUnbounded, false, false};
constexpr int64_t kMaxSteps = int64_t(1) << 53;  // step counters: far beyond any run, far from overflow
constexpr int64_t kMinImageSize = 8, kMaxImageSize = 64;  // --image-size (0: the dataset's own)

// When a field is written to a checkpoint's metadata: always, or only when it is not the
// default (the options beyond Algorithm 2: a default run's checkpoint stays as it was, and
// checkpoints written before the option existed still load, meaning the default). A
// when_not_default field whose default changes becomes `always`, and its old default goes
// into legacy_metadata() (config.cpp), which older checkpoints that omit it still mean.
enum class MetaRule { always, when_not_default };

// THE training config: every field once, with its type, default, ./train_mnist flag,
// bounds, metadata rule and help. It drives the TrainConfig struct, the flags
// (TrainConfigFlags), to_metadata / from_metadata ("train." + name, both directions) and
// validate(). The bounds are far beyond any sensible run; they keep batch * image and the
// schedule's arrays allocatable and the step counters far from overflow. T's bound is
// kMaxT (ddpm/diffusion/schedule.h), the one every tool applies.
//   X(type, name, default, flag, bounds, metadata rule, help)
#define DDPM_TRAIN_CONFIG_FIELDS(X)                                                                                  \
  X(std::string, model, "tiny", "--model", kNoBounds, MetaRule::always,                                              \
    "U-Net config: tiny (1.1M params) or small (6.5M)")                                                              \
  X(int64_t, batch, 32, "--batch", closed(1, 65536), MetaRule::always, "batch size")                                 \
  X(int64_t, micro_batch, 0, "--micro-batch", closed(0, 65536), MetaRule::when_not_default,                          \
    "split each batch into batch/M micro-batches of M, gradients summed in a fixed tree: the same bits on any "      \
    "number of MPI ranks dividing batch/M (docs/scaling.md); 0: the whole batch at once")                            \
  X(double, lr, 2e-3, "--lr", above(0), MetaRule::always,                                                            \
    "Adam learning rate (after warm-up); with --resume it replaces the checkpoint's, recorded in its metadata")      \
  X(int64_t, warmup, 200, "--warmup", at_least(0), MetaRule::always, "linear learning-rate warm-up steps")           \
  X(double, grad_clip, 1.0, "--grad-clip", at_least(0), MetaRule::always,                                            \
    "clip the global gradient norm to this (0: off)")                                                                \
  X(double, ema, 0.999, "--ema", half_open(0, 1), MetaRule::always, "EMA decay of the weights used for sampling")    \
  X(double, ema_warmup, 10.0, "--ema-warmup", closed(1, 1e9), MetaRule::always,                                      \
    "EMA warm-up W: the decay at update k is min(--ema, (1+k)/(W+k)), so until that reaches --ema the EMA "          \
    "averages about the last 1/(W-1) of the updates (2: the mean of all of them; 1: no warm-up)")                    \
  X(std::string, schedule, "linear", "--schedule", kNoBounds, MetaRule::always,                                      \
    "beta schedule: linear, cosine, sigmoid or quadratic")                                                           \
  X(int64_t, T, 1000, "--T", closed(1, kMaxT), MetaRule::always, "number of diffusion steps")                        \
  X(uint64_t, seed, 0, "--seed", kNoBounds, MetaRule::always,                                                        \
    "seed for initialization, data order, t, noise and dropout")                                                     \
  X(LossType, loss, LossType::simple, "--loss", kNoBounds, MetaRule::always,                                         \
    "simple (L_simple) or weighted (L_t with its scaling term)")                                                     \
  X(VarianceType, variance, VarianceType::fixed_large, "--variance", kNoBounds, MetaRule::always,                    \
    "sigma_t^2 for sampling and the weighted loss: fixed_large or fixed_small")                                      \
  X(bool, conditional, false, "--conditional", kNoBounds, MetaRule::always,                                          \
    "class-conditional model (classifier-free guidance)")                                                            \
  X(double, p_uncond, 0.1, "--p-uncond", closed(0, 1), MetaRule::always,                                             \
    "with --conditional: probability of dropping the label")                                                         \
  X(int64_t, classes, 0, "--classes", closed(0, 10), MetaRule::when_not_default,                                     \
    "with --conditional: the number of classes, 2..10 (0: the dataset's own: 10 for MNIST and CIFAR-10, the "        \
    "sub-folders for --dataset folder)")                                                                             \
  X(PredictionTarget, predict, PredictionTarget::eps, "--predict", kNoBounds, MetaRule::when_not_default,            \
    "what the network predicts: eps (Algorithm 1), x0 or v (Salimans & Ho 2022)")                                    \
  X(bool, learned_variance, false, "--learned-variance", kNoBounds, MetaRule::when_not_default,                      \
    "learn Sigma (Nichol & Dhariwal 2021): L_hybrid = L_simple + 0.001 L_vlb, sampling with learned_range")          \
  X(TimestepSampling, timesteps, TimestepSampling::uniform, "--timesteps", kNoBounds, MetaRule::when_not_default,    \
    "t sampling: uniform (Algorithm 1) or importance (p_t ~ sqrt(E[L_t^2]))")                                        \
  X(int64_t, steps, 3400, "--steps", closed(0, static_cast<double>(kMaxSteps)), MetaRule::always,                    \
    "the step training ends at, where a decaying --lr-schedule lands; with --resume it replaces the checkpoint's")   \
  X(double, minutes, 0.0, "--minutes", closed(0, 1e6), MetaRule::when_not_default,                                   \
    "if > 0, train for this many minutes of training steps instead: --steps is chosen from the speed of the first "  \
    "steps (grids and checkpoints not counted)")                                                                     \
  X(LrSchedule, lr_schedule, LrSchedule::cosine, "--lr-schedule", kNoBounds, MetaRule::always,                       \
    "learning rate after warm-up: constant, or cosine / linear decay to --lr-floor x --lr at --steps")               \
  X(double, lr_floor, 0.1, "--lr-floor", closed(0, 1), MetaRule::always,                                             \
    "with a decaying --lr-schedule: the final learning rate as a fraction of --lr")                                  \
  X(int64_t, ch, 0, "--ch", closed(0, 1024), MetaRule::when_not_default,                                             \
    "the U-Net's base channel count (0: the --model's own)")                                                         \
  X(int64_t, res_blocks, 0, "--res-blocks", closed(0, 8), MetaRule::when_not_default,                                \
    "ResNet blocks per level of the U-Net (0: the --model's own)")                                                   \
  X(double, dropout, -1.0, "--dropout", closed(-1, 0.9), MetaRule::when_not_default,                                 \
    "dropout in the ResNet blocks (-1: the --model's own: 0 for tiny, 0.1 for small and cifar10)")                   \
  X(int64_t, image_size, 0, "--image-size", closed(0, kMaxImageSize), MetaRule::when_not_default,                    \
    "side of the square training images, 8..64 and a multiple of 2^(levels-1) (4 for tiny and small, 8 for "         \
    "cifar10); the attention resolutions follow it (0: the dataset's own; for --dataset folder the --model's own)")  \
  X(int64_t, channels, 0, "--channels", closed(0, 3), MetaRule::when_not_default,                                    \
    "1 (gray) or 3 (RGB): --dataset folder converts every image to it (0: the dataset's own)")                       \
  X(bool, hflip, false, "--hflip", kNoBounds, MetaRule::when_not_default,                                            \
    "random horizontal flips of the training images (Ho et al. 2020 used them for CIFAR-10)")

struct TrainConfig {
#define DDPM_TRAIN_CONFIG_MEMBER(T_, name, default_value, flag, bounds, rule, help) T_ name = default_value;
  DDPM_TRAIN_CONFIG_FIELDS(DDPM_TRAIN_CONFIG_MEMBER)
#undef DDPM_TRAIN_CONFIG_MEMBER

  // Every field as "train.<name>" (the table's metadata rule decides which are written).
  std::map<std::string, std::string> to_metadata() const;
  // Reads every "train.*" key (a when_not_default field missing means its default; any other
  // missing key, or a "train.*" key not in the table, is refused) and validates; errors
  // name `source` (the file's path: there is no default, so every caller names it) and the key.
  static TrainConfig from_metadata(const std::map<std::string, std::string>& m, const std::string& source);
  // Every field within its bounds and names known, and the combinations allowed; the
  // Trainer calls it before it allocates anything. Errors name the flag.
  void validate() const;
  // The U-Net this config trains: --model's, with --ch, --res-blocks, --dropout,
  // --image-size (resized_config: the attention follows), --channels, --conditional
  // (--classes classes, 10 unless given, and a null class) and --learned-variance applied.
  UNetConfig model_config() const;
};

// A named starting point for the config, before any flag: "default" (the table's defaults)
// or "paper" (Ho et al. 2020's CIFAR-10 hyperparameters: lr 2e-4, batch 128, EMA 0.9999,
// dropout 0.1, warm-up 5000, grad clip 1, constant learning rate). Throws on another name.
TrainConfig preset_config(const std::string& name);

// Each field type's metadata text (to_text) and its strict parse (from_text, the inverse;
// it throws a plain message, the caller adds the file and key or the flag).
std::string to_text(const std::string& v);
std::string to_text(int64_t v);
std::string to_text(uint64_t v);
std::string to_text(double v);  // 17 significant digits: parses back to the same double
std::string to_text(bool v);
std::string to_text(LossType v);
std::string to_text(VarianceType v);
std::string to_text(PredictionTarget v);
std::string to_text(TimestepSampling v);
std::string to_text(LrSchedule v);
void from_text(const std::string& s, std::string& v);
void from_text(const std::string& s, int64_t& v);   // an optional '-' and digits, nothing else
void from_text(const std::string& s, uint64_t& v);
void from_text(const std::string& s, double& v);    // finite
void from_text(const std::string& s, bool& v);      // "0" or "1"
void from_text(const std::string& s, LossType& v);
void from_text(const std::string& s, VarianceType& v);
void from_text(const std::string& s, PredictionTarget& v);
void from_text(const std::string& s, TimestepSampling& v);
void from_text(const std::string& s, LrSchedule& v);

}  // namespace ddpm
