// train_mnist: train a DDPM U-Net on MNIST (Algorithm 1), with progress, sample grids,
// exact checkpoints and resume. `./train_mnist --help` lists every flag; the run itself is
// ddpm/app/train_run.h's train_run.
#include <atomic>
#include <csignal>
#include <memory>

#include "ddpm/app/flags.h"
#include "ddpm/app/train_run.h"

using namespace ddpm;

namespace {

std::atomic<bool> g_interrupted{false};

// The first Ctrl-C (or SIGTERM) asks for a checkpoint and a clean exit; a second one kills
// at once (safe too: checkpoints are written atomically). Under mpirun, Ctrl-C reaches the
// ranks as SIGTERM; they stop together at the next micro-batch.
void on_sigint(int sig) {
  g_interrupted = true;
  std::signal(sig, SIG_DFL);
}

int train(const TrainRun& options, Communicator& comm) {
  // A file size limit (ulimit -f) would kill us with SIGXFSZ; ignored, the write fails with
  // EFBIG and the checkpoint writer reports it.
  std::signal(SIGXFSZ, SIG_IGN);
  std::signal(SIGINT, on_sigint);
  std::signal(SIGTERM, on_sigint);
  return train_run(options, g_interrupted, comm);
}

}  // namespace

int main(int argc, char** argv) {
  // MPI_Init in an MPI build (`mpirun -np R ./train_mnist`: docs/scaling.md); one process otherwise.
  std::unique_ptr<Communicator> comm = world_communicator(&argc, &argv);
  return run_tool(parse_and_run<TrainRun, TrainRunFlags, train>, argc, argv, *comm);
}
