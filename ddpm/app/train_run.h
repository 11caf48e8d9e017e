// train_run.h: ./train_mnist as a library call. A TrainRun is the tool's flags in one
// struct; train_run() does what the tool does with them:
//
//   - checks every flag before any work, then locks and checks the output folder (run_folder.h);
//   - loads the dataset and builds a Trainer, fresh or resumed from a checkpoint (the
//     checkpoint's settings win; a resume may only lower --lr, as the NaN report advises);
//   - trains to the target step (--steps, --epochs, or --minutes of training steps: the
//     target is then chosen from the speed of the first kSpeedSteps steps) with a progress
//     line every --log-every steps, a checkpoint every --ckpt-every steps (written atomically,
//     older ones of this run pruned to --keep), and a sample grid every --sample-every steps
//     (DDIM with 50 steps by default, named so: samples-<step>-ddim50.png);
//   - stops cleanly when `interrupted` turns true (Ctrl-C): one checkpoint, exit 0;
//   - over MPI ranks, shares every step between them with the bits of one process (below);
//   - at the end writes loss.svg and samples.png (Algorithm 2 with the EMA weights).
//
// tools/train_mnist.cpp is its main: flags, signal handlers, train_run. The tests drive it
// directly, with the same options a command line gives.
#pragma once

#include <atomic>
#include <cstdint>
#include <string>
#include <vector>

#include "ddpm/app/config_flags.h"
#include "ddpm/app/flags.h"
#include "ddpm/dist/communicator.h"
#include "ddpm/train/config.h"

namespace ddpm {

struct TrainRun {
  TrainConfig config;                           // the training config's table (ddpm/train/config.h)
  std::vector<std::string> config_flags_given;  // which of its flags the command line set
  std::string preset;                           // the preset config.* started from (preset_config)
  int64_t epochs = 0;                           // > 0: --steps is this many epochs of the dataset
  int64_t threads = default_threads();        // the machine's cores, at most the pool's bound
  int64_t sample_every = 1000, sample_n = 36, ckpt_every = 500, keep = 3, log_every = 10;
  int64_t inject_nan_at = 0;                  // debug: a NaN in this step's batch,
  int64_t inject_nan_sample = 0;              // in this sample of it (the rank that owns it meets it)
  std::string grid_sampler = "ddim";          // the --sample-every grids: ddim (50 steps) or ddpm
  std::string out = "out", resume, dataset = "mnist", data_dir;
  bool overwrite = false;
};

// ./train_mnist's flags, the config table's and the run's, bound to `run`. Construct, then
// parse(argc, argv); false means --help was asked (help() has the text).
class TrainRunFlags {
 public:
  explicit TrainRunFlags(TrainRun* run);
  bool parse(int argc, const char* const* argv);
  std::string help() const { return flags_.help(); }

 private:
  TrainRun* run_;
  Flags flags_;
  TrainConfigFlags config_flags_;
};

// Runs the training. Returns the exit code: 0 done or interrupted (a checkpoint saved),
// 3 stopped on a non-finite loss or gradient (the report names the last good checkpoint);
// other failures throw ddpm::Error.
//
// Over the ranks of `comm` (mpirun -np R ./train_mnist, docs/scaling.md) every rank calls it
// alike: each computes its share of every batch's micro-batches (Trainer::distribute), rank
// 0 alone owns --out (the lock, checkpoints, grids, loss.svg) and the others never touch it,
// and every rank returns the same code. `interrupted` on any rank stops all of them at the
// same step.
int train_run(const TrainRun& run, const std::atomic<bool>& interrupted, Communicator& comm);
int train_run(const TrainRun& run, const std::atomic<bool>& interrupted);  // one process

// Steps of this run timed before --minutes chooses the target (after one untimed step).
constexpr int64_t kSpeedSteps = 20;

}  // namespace ddpm
