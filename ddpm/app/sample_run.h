// sample_run.h: ./sample as a library call. A SampleRun is the tool's flags in one struct;
// sample_run() does what the tool does with them:
//
//   - checks every flag before any work;
//   - loads the checkpoint (checkpoint_model.h) and takes its schedule; --schedule and --T
//     are for --forward alone and for a weights file that records no schedule;
//   - writes into --out: forward.png (--forward: test digits under q), samples.png (--n
//     images, Algorithm 2 or DDIM) with chain.png (--chain) and chain.gif (--gif) from the
//     same run, the --save-samples file for ./eval, and for a class-conditional model
//     class_grid.png (--class-grid), or one class_grid_w<w>.png per --guidance-list weight.
//
// The noise of image i is keyed by (seed, t, i), so --batch and --threads never change the
// images; image i of samples.png is row i of chain.png. tools/sample.cpp is its main: flags,
// sample_run. The tests drive it directly, with the same options a command line gives.
#pragma once

#include <cstdint>
#include <set>
#include <string>
#include <vector>

#include "ddpm/app/flags.h"
#include "ddpm/app/sampling.h"

namespace ddpm {

struct SampleRun {
  std::string checkpoint;  // a ./train_mnist checkpoint; empty: --forward alone
  std::string out = "out";
  int64_t n = 64, batch = 64, seed = 0;
  std::string variance;     // sigma_t^2; empty: the checkpoint's (checkpoint_sigma)
  bool use_ema = true;
  std::string class_label;  // conditional models: "" (image i has class i mod 10), 0..9 or "null"
  double guidance = 1.0;
  std::string guidance_list;  // with class_grid: "0,0.5,2", one grid per weight
  SamplerChoice sampler;
  std::string save_samples;  // a safetensors file of the samples for ./eval --samples
  bool class_grid = false, chain = false, gif = false, forward = false;
  int64_t gif_frames = 40, fig_rows = 8, fig_cols = 11;
  std::string dataset = "mnist";  // the test images of forward.png: mnist, fashion, cifar10 or folder
  std::string data_dir;           // their folder (empty: the dataset's default, load_dataset)
  std::string schedule = "linear";      // --schedule and --T: without a checkpoint's own
  int64_t T = 1000;
  int64_t threads = default_threads();
  int64_t log_every = 100;
  std::set<std::string> given;  // the flags the command line set (Flags::record_given)
};

// ./sample's flags, each bound to its field of `run`; the names of those given go to
// run->given. Construct, then parse(argc, argv); false means --help was asked (help() has
// the text).
class SampleRunFlags : public Flags {
 public:
  explicit SampleRunFlags(SampleRun* run);
};

// Writes the figures. Returns the exit code (0); failures throw ddpm::Error. Over the ranks
// of `comm` (mpirun -np R ./sample) every rank calls it alike: they share the images, with
// the bits of one process (sample_in_batches), and rank 0 writes the files.
int sample_run(const SampleRun& run, Communicator& comm);
int sample_run(const SampleRun& run);  // one process

}  // namespace ddpm
