// sampling.h: how the tools sample a trained U-Net. It composes the paper's sampler and the
// extensions around one model:
//
//   the network        unet_network: the U-Net's output, no gradient, with classifier-free
//                      guidance mixed into its prediction channels (guidance.h)
//   the model          unet_model: that output as the reverse process's (eps_theta, Sigma_theta):
//                      converted to eps when the net predicts x_0 or v (prediction_targets.h),
//                      Sigma fixed (the paper) or learned (learned_variance.h)
//   the sampler        Algorithm 2 (ddpm/diffusion/algorithms.h) or DDIM (ddim.h), chosen by
//                      the flags ./sample and ./eval share
//   the batches        sample_in_batches: n images, `batch` at a time. The noise of image i is
//                      keyed by its global index i (SampleOptions::first_index), so the images
//                      are bit-identical for any batch size, and for any number of MPI ranks
//                      sharing them (BatchedSampleOptions::comm).
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "ddpm/app/flags.h"
#include "ddpm/diffusion/algorithms.h"
#include "ddpm/diffusion/diffusion.h"
#include "ddpm/dist/communicator.h"
#include "ddpm/extensions/ddim.h"
#include "ddpm/extensions/prediction_targets.h"
#include "ddpm/model/unet.h"

namespace ddpm {

// Sigma_theta for sampling: one of the paper's fixed choices, or the model's learned one.
struct SigmaChoice {
  bool learned = false;
  VarianceType fixed = VarianceType::fixed_large;  // when not learned
};
// "learned_range" or variance_name(fixed).
std::string sigma_name(const SigmaChoice& sigma);
// The Sigma to sample a checkpoint's model with: `requested` (a --variance flag: fixed_large,
// fixed_small or learned_range) when given, else learned for a learned-variance model, else
// train.variance (fixed_large when the metadata has none).
SigmaChoice checkpoint_sigma(const UNetConfig& config, const std::map<std::string, std::string>& metadata,
                             const std::string& requested);
// The prediction target a checkpoint's model was trained on ("train.predict"; eps when absent).
PredictionTarget prediction_target(const std::map<std::string, std::string>& metadata);

// The U-Net's raw output [N, C or 2C, H, W] (eval mode, no gradient). For a conditional
// model, labels (size N; num_classes means null) and the guidance weight w give
// classifier-free guidance, (1 + w) out(x, c) - w out(x, null), on the prediction channels
// [0, C) only; a learned variance's r channels come from the conditional pass. The model and
// the labels must outlive the function.
EpsFn unet_network(UNet& model, const std::vector<int64_t>* labels = nullptr, double guidance = 0.0);
// The reverse process's model from a U-Net (see the top of this file). The model, schedule and
// labels must outlive it.
ModelFn unet_model(UNet& model, const Schedule& s, PredictionTarget predict, const SigmaChoice& sigma,
                   const std::vector<int64_t>* labels = nullptr, double guidance = 0.0);
// unet_model of an eps-predicting model with the paper's Sigma = beta_t I: the default.
ModelFn unet_model(UNet& model, const Schedule& s);

// The model for images [first, first + count) of a batched run: a class-conditional run
// gives each batch its own labels through it.
using BatchModelFn = std::function<ModelFn(int64_t first, int64_t count)>;
// Image i gets class label_of(i) when the model is conditional (no label_of: the null class,
// unconditional draws), guided with weight w. The model and schedule must outlive it.
BatchModelFn unet_batch_model(UNet& model, const Schedule& s, PredictionTarget predict, const SigmaChoice& sigma,
                              std::function<int64_t(int64_t)> label_of = nullptr, double guidance = 0.0);

// One sampler run on one batch: shape = [count, C, H, W], options.first_index = first.
// ddpm_sampler is Algorithm 2 (ddpm::sample); ddim_sampler is ddim_sample with `ddim` (its
// keep_t and first_index come from the SampleOptions; clip_x0 and progress are Algorithm 2's
// and are ignored: DDIM's clipping is ddim.clip_x0, and Sigma_theta plays no part in DDIM).
// The schedule must outlive the Sampler (it is held by reference).
using Sampler = std::function<SampleResult(const ModelFn& model, const Shape& shape, const SampleOptions& options)>;
Sampler ddpm_sampler(const Schedule& s, uint64_t seed);
Sampler ddim_sampler(const Schedule& s, uint64_t seed, const DdimOptions& ddim);

// The sampler chosen by the flags ./sample and ./eval share: --sampler ddpm|ddim,
// --ddim-steps S, --eta e, --spacing linspace|trailing, --clip-x0 (both samplers).
struct SamplerChoice {
  std::string sampler = "ddpm";      // ddpm (Algorithm 2) or ddim
  int64_t ddim_steps = 50;           // DDIM's S respaced steps
  double eta = 0.0;                  // DDIM's eta: 0 deterministic, 1 DDPM's beta-tilde variance
  std::string spacing = "trailing";  // DDIM's respacing: linspace or trailing
  bool clip_x0 = false;              // clip the predicted x_0 to [-1, 1] (a departure from Algorithm 2)
};
void add_sampler_flags(Flags& flags, SamplerChoice* choice);
// Checks the names and eta, and that --ddim-steps, --eta and --spacing come with --sampler ddim
// (`given`: the flags the command line set, Flags::record_given).
void check_sampler_flags(const std::set<std::string>& given, const SamplerChoice& choice);
// ddpm_sampler or ddim_sampler; checks 1 <= S <= T first. The schedule must outlive it.
Sampler make_sampler(const Schedule& s, uint64_t seed, const SamplerChoice& choice);
// "DDIM, 50 steps (trailing, eta 0)" or "Algorithm 2, 1000 steps, fixed_large" (DDIM does not
// use Sigma), plus ", x_0 clipped".
std::string describe_sampler(const SamplerChoice& choice, int64_t T, const SigmaChoice& sigma);

struct BatchedSampleOptions {
  SampleOptions sample;  // clip_x0 and keep_t; first_index and progress are set per batch
  int64_t batch = 64;    // images per sampler call
  int64_t chain_n = -1;  // keep the chain (keep_t) of the first chain_n images only; -1: all
  // Called after each reverse step of each batch with the batch's [first, first + count)
  // and the t just done (see SampleOptions::progress). Over ranks, on rank 0 only (its share).
  std::function<void(int64_t first, int64_t count, int64_t t)> progress;
  // The ranks that share the images (nullptr: this process draws them all). Every rank must
  // call sample_in_batches alike.
  Communicator* comm = nullptr;
};
// n images of shape image = [C, H, W]. The result holds x0 [n, C, H, W] and, for each
// kept t, the chain entry [min(n, chain_n), C, H, W]. Over R ranks, rank r draws the images
// [n r / R, n (r + 1) / R) in batches of `batch`, and every rank gets the whole result: the
// bits one process draws.
SampleResult sample_in_batches(const Sampler& sampler, const BatchModelFn& model, int64_t n, const Shape& image,
                               const BatchedSampleOptions& options);

// Images [first, first + count) of x [N, ...] as a new tensor [count, ...].
Tensor slice_batch(const Tensor& x, int64_t first, int64_t count);

// The class-conditional grid: one row of `per_row` images per class, from a conditional model.
struct ClassGridOptions {
  int64_t per_row = 8;                               // images per class
  double guidance = 0.0;                             // w
  uint64_t seed = 0;                                 // the same seed for every w: same x_T
  PredictionTarget predict = PredictionTarget::eps;  // what the checkpoint's model predicts
  SigmaChoice sigma;                                 // Algorithm 2's Sigma_theta
  SamplerChoice sampler;                             // Algorithm 2 or DDIM, and the x_0 clipping
};
// [num_classes * per_row, C, S, S] (write it with write_image_grid(path, x, per_row)).
Tensor sample_class_grid(UNet& model, const Schedule& s, const ClassGridOptions& options);

}  // namespace ddpm
