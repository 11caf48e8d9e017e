// eval: measure what the models make. `./eval --help` lists every flag.
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
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <map>
#include <memory>
#include <sstream>
#include <string>

#include "ddpm/core/check.h"
#include "ddpm/eval/classifier.h"
#include "ddpm/app/flags.h"
#include "ddpm/data/mnist.h"
#include "ddpm/eval/evaluate.h"
#include "ddpm/app/figures.h"
#include "ddpm/app/sampling.h"
#include "ddpm/core/parallel.h"
#include "ddpm/extensions/prediction_targets.h"
#include "ddpm/train/trainer.h"

using namespace ddpm;

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

EvalProgress progress_printer(const char* what) {
  auto t0 = Clock::now();
  return [what, t0](int64_t done, int64_t total) {
    std::fprintf(stderr, "  %s %lld/%lld (%.1f s)\n", what, static_cast<long long>(done),
                 static_cast<long long>(total), seconds_since(t0));
  };
}

int train(const std::string& data_dir, const std::string& path, ClassifierTrainConfig config) {
  const MnistSplit train_set = load_mnist(data_dir, "train");
  const MnistSplit test_set = load_mnist(data_dir, "test");
  Classifier model(config.seed);
  std::printf("training the evaluation classifier: %lld epochs of %lld MNIST training images, batch %lld, seed %llu\n",
              static_cast<long long>(config.epochs), static_cast<long long>(train_set.images.size(0)),
              static_cast<long long>(config.batch), static_cast<unsigned long long>(config.seed));
  auto t0 = Clock::now();
  train_classifier(model, train_set.images, train_set.labels, config, [&](int64_t step, int64_t steps, double loss) {
    if (step % 200 == 0 || step == steps)
      std::fprintf(stderr, "  step %lld/%lld  loss %.4f  (%.0f s)\n", static_cast<long long>(step),
                   static_cast<long long>(steps), loss, seconds_since(t0));
  });
  const double train_seconds = seconds_since(t0);
  const double accuracy = classifier_accuracy(classify(model, test_set.images).probs, test_set.labels);
  std::printf("test accuracy %.2f%% on the %lld MNIST test images (training took %.0f s)\n", 100.0 * accuracy,
              static_cast<long long>(test_set.images.size(0)), train_seconds);
  std::map<std::string, std::string> meta = {
      {"classifier.seed", std::to_string(config.seed)},
      {"classifier.epochs", std::to_string(config.epochs)},
      {"classifier.batch", std::to_string(config.batch)},
      {"classifier.lr", std::to_string(config.lr)},
      {"classifier.max_shift", std::to_string(config.max_shift)},
      {"classifier.test_accuracy", std::to_string(accuracy)},
  };
  save_classifier(path, model, meta);
  std::printf("saved %s\n", path.c_str());
  return accuracy >= 0.99 ? 0 : 2;
}

int run(int argc, char** argv, Communicator& comm) {
  bool train_classifier_flag = false, nll = false, use_ema = true;
  std::string classifier_path = "out/classifier.safetensors", checkpoint, samples_path, data_dir = "data/mnist";
  std::string variance;
  SamplerChoice sampler_choice;
  int64_t cls = -1;
  double guidance = 0.0;
  int64_t n = 1000, batch = 100, nll_n = 100, nll_stride = 1, seed = 0, epochs = 5;
  int64_t threads = default_threads();
  Flags flags("eval",
              "Measure sample quality (FLD, precision/recall, class balance in an MNIST classifier's features) and "
              "likelihood (VLB bits/dim).");
  flags.add("--train-classifier", &train_classifier_flag, "train the evaluation classifier and save it to --classifier");
  flags.add("--classifier", &classifier_path, "the evaluation classifier's safetensors file");
  flags.add("--epochs", &epochs, "with --train-classifier: training epochs");
  flags.add("--checkpoint", &checkpoint, "a ./train_mnist checkpoint to sample from (or to compute --nll for)");
  flags.add("--ema", &use_ema, "use the checkpoint's EMA weights (if it has them)");
  flags.add("--samples", &samples_path, "a safetensors file with a tensor \"samples\" [N, 1, 28, 28] in [-1, 1]");
  flags.add("--n", &n, "with --checkpoint: images to sample (FLD depends on N; every figure states it)");
  flags.add("--batch", &batch, "images per sampling or VLB batch");
  flags.add("--variance", &variance,
            "sigma_t^2: fixed_large (beta), fixed_small (beta-tilde) or learned_range; default: learned_range for a "
            "--learned-variance checkpoint, else the checkpoint's train.variance");
  add_sampler_flags(flags, &sampler_choice);
  flags.add("--class", &cls, "with --checkpoint of a conditional model: the class of every image (-1: image i has class i mod 10)");
  flags.add("--guidance", &guidance, "with --checkpoint of a conditional model: classifier-free guidance w");
  flags.add("--nll", &nll, "compute the VLB in bits/dim on MNIST test images (needs --checkpoint)");
  flags.add("--nll-n", &nll_n, "with --nll: the first M MNIST test images");
  flags.add("--nll-stride", &nll_stride, "with --nll: 1 evaluates every L_{t-1}; k > 1 an estimate from every k-th");
  flags.add("--seed", &seed, "seed for sampling, the VLB noise, subsets, the noise row and the classifier");
  flags.add("--data", &data_dir, "folder with the MNIST IDX files");
  flags.add("--threads", &threads, "worker threads (results do not depend on it)");
  if (!flags.parse(argc, argv)) {
    std::printf("%s", flags.help().c_str());
    return 0;
  }
  set_num_threads(check_threads_flag(threads));
  if (train_classifier_flag) {
    DDPM_CHECK(comm.size() == 1, "--train-classifier runs on one process, not over MPI ranks");
    ClassifierTrainConfig config;
    config.seed = static_cast<uint64_t>(seed);
    config.epochs = epochs;
    return train(data_dir, classifier_path, config);
  }
  DDPM_CHECK(n >= 4 && batch >= 1 && nll_n >= 1 && nll_stride >= 1,
             "--n must be at least 4 (k = 3 neighbours), --batch, --nll-n and --nll-stride positive");
  DDPM_CHECK(nll || checkpoint.empty() != samples_path.empty(),
             "give --checkpoint CKPT (sample from a model) or --samples FILE, or --nll --checkpoint CKPT, "
             "or --train-classifier; see --help");

  check_sampler_flags(flags, sampler_choice);
  for (const char* f : {"--sampler", "--ddim-steps", "--eta", "--spacing", "--class", "--guidance"})
    DDPM_CHECK(!flags.given(f) || (!checkpoint.empty() && !nll), f << " is for sampling from --checkpoint (not --samples or --nll)");

  std::unique_ptr<UNet> model;
  Schedule schedule;
  SigmaChoice sigma;
  PredictionTarget predict = PredictionTarget::eps;
  if (!checkpoint.empty()) {
    std::map<std::string, std::string> meta;
    model = load_model(checkpoint, use_ema, &meta);
    const TrainConfig tc = TrainConfig::from_metadata(meta, checkpoint);
    schedule = make_schedule(tc.schedule, tc.T);
    predict = prediction_target(meta);
    sigma = checkpoint_sigma(model->config(), meta, variance);
  }

  if (nll) {
    DDPM_CHECK(model, "--nll needs --checkpoint");
    const MnistSplit test_set = load_mnist(data_dir, "test");
    DDPM_CHECK(nll_n <= test_set.images.size(0), "--nll-n " << nll_n << " exceeds the " << test_set.images.size(0)
                                                             << " test images");
    Tensor images = test_set.images.reshape(test_set.images.shape());
    Tensor subset({nll_n, 1, 28, 28});
    std::copy(images.data(), images.data() + subset.numel(), subset.data());
    const std::string data_name = nll_n == test_set.images.size(0)
                                      ? std::string("the MNIST test set")
                                      : "MNIST test images 0.." + std::to_string(nll_n - 1) + " (a subset)";
    std::fprintf(stderr, "VLB of %s (%s, %s%s), %lld images\n", checkpoint.c_str(), sigma_name(sigma).c_str(),
                 nll_stride == 1 ? "all terms" : "strided estimate", "", static_cast<long long>(nll_n));
    const NllSummary s = evaluate_nll(schedule, unet_model(*model, schedule, predict, sigma), subset, data_name, batch,
                                      nll_stride, static_cast<uint64_t>(seed), sampler_choice.clip_x0,
                                      progress_printer("VLB images"), &comm);
    std::printf("%s", format_nll(s).c_str());
    return 0;
  }

  // A samples file is checked before the classifier and the reference set are read.
  SamplesFile file;
  if (!samples_path.empty()) file = load_samples(samples_path);
  const std::unique_ptr<Classifier> classifier = load_classifier(classifier_path);
  const MnistSplit test_set = load_mnist(data_dir, "test");
  const MnistSplit train_set = load_mnist(data_dir, "train");
  const EvalReference reference = make_reference(*classifier, test_set.images, "MNIST test set", seed);

  Tensor samples;
  std::string samples_name;
  std::vector<int64_t> labels;  // the requested class of each sample (conditional models only)
  if (!checkpoint.empty()) {
    const UNetConfig& mc = model->config();
    const bool conditional = mc.num_classes > 0;
    DDPM_CHECK(conditional || (!flags.given("--class") && !flags.given("--guidance")),
               checkpoint << " is an unconditional model; --class and --guidance need a --conditional checkpoint");
    DDPM_CHECK(cls >= -1 && cls < std::max<int64_t>(mc.num_classes, 1),
               "--class " << cls << ": use 0.." << mc.num_classes - 1 << " or -1 (image i has class i mod "
                          << mc.num_classes << ")");
    DDPM_CHECK(std::isfinite(guidance), "--guidance must be a finite number");
    const Sampler sampler = make_sampler(schedule, static_cast<uint64_t>(seed), sampler_choice);
    std::string how = describe_sampler(sampler_choice, schedule.T, sigma);
    std::function<int64_t(int64_t)> label_of;
    if (conditional) {
      for (int64_t i = 0; i < n; i++) labels.push_back(cls >= 0 ? cls : i % mc.num_classes);
      label_of = [&labels](int64_t i) { return labels[i]; };
      std::ostringstream os;
      os << ", " << (cls >= 0 ? "class " + std::to_string(cls) : std::string("class i mod 10")) << ", w " << guidance;
      how += os.str();
    }
    std::fprintf(stderr, "sampling %lld images from %s (%s)\n", static_cast<long long>(n), checkpoint.c_str(),
                 how.c_str());
    const BatchModelFn model_for = unet_batch_model(*model, schedule, predict, sigma, label_of, guidance);
    BatchedSampleOptions o;
    o.sample.clip_x0 = sampler_choice.clip_x0;
    o.batch = batch;
    o.chain_n = 0;
    o.comm = &comm;  // MPI ranks share the images
    const EvalProgress progress = progress_printer("sampled");
    o.progress = [&progress, n](int64_t first, int64_t count, int64_t t) {
      if (t == 1) progress(first + count, n);  // Algorithm 2 only: DDIM reports nothing
    };
    samples = sample_in_batches(sampler, model_for, n, {1, 28, 28}, o).x0;
    samples_name = "samples (" + how + ")";
  } else {
    samples = file.samples;
    labels = file.labels;
    samples_name = "samples (" + samples_path + ")";
  }
  const int64_t N = samples.size(0);
  DDPM_CHECK(N <= train_set.images.size(0), "N = " << N << " exceeds the training set");
  std::vector<QualityRow> rows;
  rows.push_back(evaluate_images(*classifier, reference, samples, samples_name));
  rows.push_back(evaluate_images(*classifier, reference, random_subset(train_set.images, N, seed),
                                 "MNIST train images (floor)"));
  rows.push_back(evaluate_images(*classifier, reference, noise_images(N, seed), "N(0, 1) noise images (ceiling)"));
  std::printf("%s", format_quality(rows, reference).c_str());
  if (!labels.empty()) {
    const ClassAgreement a = class_agreement(classify(*classifier, prepare_images(samples)).probs, labels);
    if (a.counted > 0) std::printf("%s", format_agreement(a, samples_name).c_str());
    else std::printf("class agreement: every label is the null class (unconditional draws), nothing to compare\n");
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  std::unique_ptr<Communicator> comm = world_communicator(&argc, &argv);  // MPI_Init in an MPI build
  return run_tool(run, argc, argv, *comm);
}
