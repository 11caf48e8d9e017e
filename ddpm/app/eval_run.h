// eval_run.h: ./eval as a library call. An EvalRun is the tool's flags in one struct;
// eval_run() does what the tool does with them, on one of three paths:
//
//   classifier   --train-classifier: trains the evaluation classifier (a LeNet,
//                ddpm/eval/classifier.h) on MNIST train, reports its test accuracy, saves it
//                to --classifier
//   nll          --nll --checkpoint CKPT: the VLB in bits/dim (every channel a dimension) on the
//                first --nll-n test images of --dataset (MNIST by default; CIFAR-10's
//                test_batch.bin; a folder's own images, at the checkpoint's size and channels),
//                L_T, sum L_{t-1} and L_0 apart (learned_range for a learned-variance model)
//   quality      (28x28 gray models only: an MNIST classifier's features) --checkpoint CKPT (--n images sampled with Algorithm 2 or DDIM, a conditional
//                model's --class and --guidance) or --samples FILE (./sample --save-samples):
//                FLD, precision/recall and classes with the floor (N training images) and
//                ceiling (N noise images) rows; for images with requested labels, the
//                classifier's agreement with them
//
// The computations are ddpm/eval/evaluate.h's; this file loads, samples and prints.
// tools/eval.cpp is its main: flags, eval_run. The tests drive it directly, with the same
// options a command line gives.
#pragma once

#include <cstdint>
#include <set>
#include <string>
#include <vector>

#include "ddpm/app/flags.h"
#include "ddpm/app/sampling.h"

namespace ddpm {

struct EvalRun {
  bool train_classifier = false;
  std::string classifier = "out/classifier.safetensors";
  int64_t epochs = 5;          // --train-classifier's epochs
  std::string checkpoint;      // sample from it, or --nll of it
  bool use_ema = true;
  std::string samples;         // a samples file instead of --checkpoint
  int64_t n = 1000, batch = 100;
  std::string variance;        // sigma_t^2; empty: the checkpoint's (checkpoint_sigma)
  SamplerChoice sampler;
  int64_t class_label = -1;    // conditional models: the class of every image; -1: i mod 10
  double guidance = 0.0;
  bool nll = false;
  int64_t nll_n = 100, nll_stride = 1;
  int64_t seed = 0;
  std::string dataset = "mnist";  // --nll's test images: mnist, fashion, cifar10 or folder
  std::string data_dir;           // their folder (empty: the dataset's default, data/mnist for the rest)
  int64_t threads = default_threads();
  std::set<std::string> given;  // the flags the command line set (Flags::record_given)
};

// ./eval's flags, each bound to its field of `run`; the names of those given go to
// run->given. Construct, then parse(argc, argv); false means --help was asked (help() has
// the text).
class EvalRunFlags : public Flags {
 public:
  explicit EvalRunFlags(EvalRun* run);
};

// Runs the evaluation; the report goes to stdout, progress to stderr. Returns the exit code:
// 0, or 2 when a trained classifier's test accuracy is below 99%. Failures throw ddpm::Error.
// Over the ranks of `comm` (mpirun -np R ./eval) every rank calls it alike: they share the
// sampled images and --nll's test images with the bits of one process, and only rank 0's
// report is seen (run_tool); --train-classifier is for one process.
int eval_run(const EvalRun& run, Communicator& comm);
int eval_run(const EvalRun& run);  // one process

}  // namespace ddpm
