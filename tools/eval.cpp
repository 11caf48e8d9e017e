// eval: measure what the models make. `./eval --help` lists every flag; the run itself is
// ddpm/app/eval_run.h's eval_run.
//
//   ./eval --train-classifier                 train the evaluation classifier (a LeNet,
//                                             ddpm/eval/classifier.h) on MNIST train, report its
//                                             test accuracy, save it to --classifier
//   ./eval --checkpoint CKPT --n N            sample N images (Algorithm 2, EMA weights) and
//                                             report FLD, precision/recall and classes, with
//                                             the floor (N training images) and ceiling
//                                             (N noise images) rows
//   ./eval --checkpoint CKPT --sampler ddim --ddim-steps S [--eta E]
//                                             the same with DDIM (S steps: a FLD-vs-steps table)
//   ./eval --checkpoint CKPT --class K --guidance W
//                                             a conditional model's class K (default: image i
//                                             has class i mod 10) with guidance w; also reports
//                                             the classifier's agreement with the requested class
//   ./eval --samples FILE                     the same for a safetensors file whose tensor
//                                             "samples" is [N, 1, 28, 28] in [-1, 1] (with a
//                                             tensor "labels" [N]: the agreement too), e.g.
//                                             from ./sample --save-samples FILE
//   ./eval --nll --checkpoint CKPT            the VLB in bits/dim on the first --nll-n MNIST
//                                             test images, L_T, sum L_{t-1} and L_0 apart
//                                             (learned_range for a --learned-variance model)
// The checkpoint's prediction target (eps, x0 or v) is read from its metadata.
#include <memory>

#include "ddpm/app/flags.h"
#include "ddpm/app/eval_run.h"

int main(int argc, char** argv) {
  using namespace ddpm;
  std::unique_ptr<Communicator> comm = world_communicator(&argc, &argv);  // MPI_Init in an MPI build
  return run_tool(parse_and_run<EvalRun, EvalRunFlags, eval_run>, argc, argv, *comm);
}
