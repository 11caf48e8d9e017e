// eval/evaluate.h: what ./eval computes, as library functions (the tool is a thin shell,
// and the end-to-end test drives these directly).
//
// Sample quality, in the evaluation classifier's 128-d penultimate features (classifier.h):
//   FLD        Frechet distance between Gaussians fitted to the features of the images
//              and of the reference (all MNIST test images): the MNIST analogue of FID
//              (Heusel et al. 2017), whose Inception features mean nothing on MNIST.
//              FLD is biased upward at small N, so every figure states its N.
//   precision, recall   k-NN manifolds, k = 3 (Kynkaenniemi et al. 2019; eval/metrics.h),
//              against a seeded subset of the test set of the same size N (the paper
//              compares sets of equal size; the radii depend on N).
//   classes    histogram of the classifier's predictions, its entropy (log2 10 = 3.32
//              bits when balanced) and the mean confidence.
// Calibration rows, same N: N training images (the floor: real data from the same
// distribution) and N pure-noise images (the ceiling).
//
// Images go through prepare_images first: clamped to [-1, 1] and rounded to the 8-bit grid
// -1 + 2k/255, exactly what a PNG would store. Model samples and files are treated alike.
//
// Likelihood: the variational bound of diffusion.h (vlb_terms, the discretized decoder
// for L_0), averaged over images, reported per part: L_T, sum_t L_{t-1}, L_0 and the total,
// in bits/dim (nats / (D ln 2), D = 784).
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "ddpm/eval/classifier.h"
#include "ddpm/diffusion/diffusion.h"
#include "ddpm/dist/communicator.h"
#include "ddpm/eval/metrics.h"
#include "ddpm/eval/linalg.h"

namespace ddpm {

// Progress: (done, total) in images.
using EvalProgress = std::function<void(int64_t done, int64_t total)>;

// Clamp to [-1, 1] and round to the nearest of the 256 levels -1 + 2k/255.
Tensor prepare_images(const Tensor& images);
// n rows of images [N, ...] chosen by a seeded permutation (n <= N), in permutation order.
Tensor random_subset(const Tensor& images, int64_t n, uint64_t seed);
// n images [n, 1, 28, 28] of N(0, 1) noise (x_T of Algorithm 2), through prepare_images.
Tensor noise_images(int64_t n, uint64_t seed);

struct EvalReference {
  std::string name;         // e.g. "MNIST test set"
  int64_t n = 0;            // images behind the Gaussian
  GaussianStats gaussian;   // of their features
  Tensor features;          // [n, 128], for the precision/recall subsets
  uint64_t seed = 0;        // picks the precision/recall subset
};
EvalReference make_reference(const Classifier& classifier, const Tensor& images, const std::string& name,
                             uint64_t seed = 0);

struct QualityRow {
  std::string name;
  int64_t n = 0;
  double fld = 0.0;
  PrecisionRecall pr;
  int64_t pr_reference_n = 0;  // size of the real set precision/recall used
  ClassStatistics classes;
};
// images [N, 1, 28, 28], N >= 4 (k = 3 needs 4 points), every value finite (a NaN or Inf
// is refused naming the set and the image, not clamped to a black pixel).
QualityRow evaluate_images(const Classifier& classifier, const EvalReference& reference, const Tensor& images,
                           const std::string& name, int64_t k = 3);

// Agreement of a conditional model's samples with the requested class: the fraction of images
// whose classifier prediction (argmax of probs [N, K]) is labels[i]. Label K is the null class
// (an unconditional draw) and is not counted; a label outside 0..K is refused, naming the
// image. per_class[k] counts class k alone.
struct ClassAgreement {
  int64_t agree = 0, counted = 0;
  std::vector<int64_t> per_class_agree, per_class_counted;  // [K] each
  double rate() const { return counted > 0 ? static_cast<double>(agree) / static_cast<double>(counted) : 0.0; }
};
ClassAgreement class_agreement(const Tensor& probs, const std::vector<int64_t>& labels);
std::string format_agreement(const ClassAgreement& a, const std::string& name);

// A samples file, as ./sample --save-samples writes it: tensor "samples" [N, 1, 28, 28], every
// value finite, and optionally "labels" [N], each a whole number 0..9 or 10 (the null class).
// Checked before anything is computed from it; errors name the file, the tensor and the
// first bad index.
struct SamplesFile {
  Tensor samples;
  std::vector<int64_t> labels;  // empty when the file has no "labels"
};
SamplesFile load_samples(const std::string& path);

// Samples come from ddpm/app/sampling.h's sample_in_batches (ddpm_sampler or ddim_sampler), as ./sample's do.

struct NllSummary {
  std::string name;  // what was computed and on what
  int64_t n = 0, D = 0, T = 0, stride = 1;
  double prior_bpd = 0, kl_sum_bpd = 0, decoder_bpd = 0, total_bpd = 0;  // means over images
  double total_nats = 0;                                                  // per image
};
// The VLB of vlb_terms on images [N, C, H, W] on the 8-bit grid, in batches; image i's noise
// is keyed by (seed, i). data_name names the images in the summary. With `comm`, its ranks
// share the images (rank r the block [N r / R, N (r + 1) / R), progress on rank 0 only) and
// every rank sums every image's terms in image order: the bits of one process. Every rank
// must call it alike.
NllSummary evaluate_nll(const Schedule& s, const ModelFn& model, const Tensor& images, const std::string& data_name,
                        int64_t batch, int64_t stride, uint64_t seed, bool clip_x0,
                        const EvalProgress& progress = nullptr, Communicator* comm = nullptr);

// The report tables as text.
std::string format_quality(const std::vector<QualityRow>& rows, const EvalReference& reference);
std::string format_nll(const NllSummary& nll);

}  // namespace ddpm
