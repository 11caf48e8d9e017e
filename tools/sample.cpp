// sample: draw images from a trained checkpoint with Algorithm 2, and the figures of the
// derivation: the denoising chain, the forward process, an animated GIF of the chain and,
// for a class-conditional model, one row per digit. `./sample --help` lists every flag; the
// run itself is ddpm/app/sample_run.h's sample_run.
//
//   ./sample --checkpoint out/ckpt-00004000.safetensors            out/samples.png
//   ./sample --checkpoint CKPT --chain --gif --forward               + chain.png, chain.gif, forward.png
//   ./sample --forward --schedule cosine --T 1000                    forward.png only, no model
//   ./sample --checkpoint CKPT --class 3 --guidance 2                a conditional model's 3s
//   ./sample --checkpoint CKPT --sampler ddim --ddim-steps 50        DDIM (Song et al. 2021), 50 steps
//   ./sample --checkpoint CKPT --class-grid --guidance-list 0,0.5,2  class_grid_w0.png, _w0.5, _w2
//   ./sample --checkpoint CKPT --n 1000 --save-samples s.safetensors  for ./eval --samples s.safetensors
//
// The checkpoint's prediction target (train.predict: eps, x0 or v) and learned variance
// (learned_range) are read from its metadata.
//
// The noise of image i is keyed by (seed, t, i), so --batch and --threads never change
// the images; image i of samples.png is row i of chain.png.
#include <memory>

#include "ddpm/app/flags.h"
#include "ddpm/app/sample_run.h"

int main(int argc, char** argv) {
  using namespace ddpm;
  std::unique_ptr<Communicator> comm = world_communicator(&argc, &argv);  // MPI_Init in an MPI build
  return run_tool(parse_and_run<SampleRun, SampleRunFlags, sample_run>, argc, argv, *comm);
}
