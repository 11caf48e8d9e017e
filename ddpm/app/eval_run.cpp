#include "ddpm/app/eval_run.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <functional>
#include <map>
#include <memory>
#include <sstream>

#include "ddpm/app/checkpoint_model.h"
#include "ddpm/app/progress.h"
#include "ddpm/core/check.h"
#include "ddpm/core/parallel.h"
#include "ddpm/data/dataset.h"
#include "ddpm/data/mnist.h"
#include "ddpm/eval/classifier.h"
#include "ddpm/eval/evaluate.h"

namespace ddpm {

EvalRunFlags::EvalRunFlags(EvalRun* run)
    : Flags("eval",
            "Measure sample quality (FLD, precision/recall, class balance in an MNIST classifier's features) and "
            "likelihood (VLB bits/dim).") {
  EvalRun& r = *run;
  add("--train-classifier", &r.train_classifier, "train the evaluation classifier and save it to --classifier");
  add("--classifier", &r.classifier, "the evaluation classifier's safetensors file");
  add("--epochs", &r.epochs, "with --train-classifier: training epochs");
  add("--checkpoint", &r.checkpoint, "a ./train_mnist checkpoint to sample from (or to compute --nll for)");
  add("--ema", &r.use_ema, "use the checkpoint's EMA weights (if it has them)");
  add("--samples", &r.samples, "a safetensors file with a tensor \"samples\" [N, 1, 28, 28] in [-1, 1]");
  add("--n", &r.n, "with --checkpoint: images to sample (FLD depends on N; every figure states it)");
  add("--batch", &r.batch, "images per sampling or VLB batch");
  add("--variance", &r.variance,
      "sigma_t^2: fixed_large (beta), fixed_small (beta-tilde) or learned_range; default: learned_range for a "
      "--learned-variance checkpoint, else the checkpoint's train.variance");
  add_sampler_flags(*this, &r.sampler);
  add("--class", &r.class_label,
      "with --checkpoint of a conditional model: the class of every image (-1: image i has class i mod K, the "
      "model's class count)");
  add("--guidance", &r.guidance, "with --checkpoint of a conditional model: classifier-free guidance w");
  add("--nll", &r.nll, "compute the VLB in bits/dim on --dataset's test images (needs --checkpoint)");
  add("--nll-n", &r.nll_n, "with --nll: the first M test images");
  add("--nll-stride", &r.nll_stride, "with --nll: 1 evaluates every L_{t-1}; k > 1 an estimate from every k-th");
  add("--seed", &r.seed, "seed for sampling, the VLB noise, subsets, the noise row and the classifier");
  add("--dataset", &r.dataset,
      "with --nll: mnist, fashion, cifar10 (test_batch.bin) or folder (its images at the checkpoint's size and "
      "channels); the quality metrics are MNIST's");
  add("--data", &r.data_dir, "the dataset's folder (empty: data/mnist; data/cifar10 for cifar10)");
  add("--threads", &r.threads, "worker threads (results do not depend on it)");
  record_given(&r.given);
}

namespace {

// The MNIST folder of the classifier and quality paths.
std::string mnist_dir(const EvalRun& r) { return r.data_dir.empty() ? "data/mnist" : r.data_dir; }

// --train-classifier: trains on MNIST train, reports the test accuracy, saves to --classifier.
// Returns 0, or 2 when the accuracy is below 99%.
int train_eval_classifier(const EvalRun& r) {
  ClassifierTrainConfig config;
  config.seed = static_cast<uint64_t>(r.seed);
  config.epochs = r.epochs;
  const MnistSplit train_set = load_mnist(mnist_dir(r), "train");
  const MnistSplit test_set = load_mnist(mnist_dir(r), "test");
  Classifier model(config.seed);
  std::printf("training the evaluation classifier: %lld epochs of %lld MNIST training images, batch %lld, seed %llu\n",
              static_cast<long long>(config.epochs), static_cast<long long>(train_set.images.size(0)),
              static_cast<long long>(config.batch), static_cast<unsigned long long>(config.seed));
  const Clock::time_point t0 = Clock::now();
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
  save_classifier(r.classifier, model, meta);
  std::printf("saved %s\n", r.classifier.c_str());
  return accuracy >= 0.99 ? 0 : 2;
}

// The flags of the nll and quality paths, checked before anything is loaded.
void check_eval_flags(const EvalRun& r) {
  DDPM_CHECK(r.n >= 4 && r.batch >= 1 && r.nll_n >= 1 && r.nll_stride >= 1,
             "--n must be at least 4 (k = 3 neighbours), --batch, --nll-n and --nll-stride positive");
  DDPM_CHECK(r.nll || r.checkpoint.empty() != r.samples.empty(),
             "give --checkpoint CKPT (sample from a model) or --samples FILE, or --nll --checkpoint CKPT, "
             "or --train-classifier; see --help");
  check_sampler_flags(r.given, r.sampler);
  DDPM_CHECK(r.nll || r.dataset == "mnist",
             "--dataset " << r.dataset << " is for --nll: the quality metrics use an MNIST classifier and MNIST's "
                                          "test set");
  check_dataset_name(r.dataset);
  for (const char* f : {"--sampler", "--ddim-steps", "--eta", "--spacing", "--class", "--guidance"})
    DDPM_CHECK(!r.given.count(f) || (!r.checkpoint.empty() && !r.nll),
               f << " is for sampling from --checkpoint (not --samples or --nll)");
}

// --nll: the VLB of the model on the first --nll-n test images of --dataset, at the model's
// size and channels.
void report_nll(const EvalRun& r, const LoadedModel& m, const SigmaChoice& sigma, Communicator& comm) {
  DDPM_CHECK(m.model, "--nll needs --checkpoint");
  const UNetConfig& mc = m.model->config();
  const Dataset test_set =
      load_dataset(r.dataset, r.data_dir, {mc.image_size, static_cast<int>(mc.in_ch)}, "test");
  DDPM_CHECK(r.nll_n <= test_set.size(), "--nll-n " << r.nll_n << " exceeds the " << test_set.size() << " test images");
  const Tensor subset = slice_batch(test_set.images, 0, r.nll_n);  // [nll_n, C, S, S]
  const std::string title = dataset_title(r.dataset, r.data_dir);
  const std::string data_name = r.nll_n == test_set.size()
                                    ? (r.dataset == "folder" ? title : "the " + title + " test set")
                                    : title + (r.dataset == "folder" ? ", images 0.." : " test images 0..") +
                                          std::to_string(r.nll_n - 1) + " (a subset)";
  std::fprintf(stderr, "VLB of %s (%s, %s), %lld images\n", r.checkpoint.c_str(), sigma_name(sigma).c_str(),
               r.nll_stride == 1 ? "all terms" : "strided estimate", static_cast<long long>(r.nll_n));
  const NllSummary s = evaluate_nll(m.schedule, unet_model(*m.model, m.schedule, m.predict, sigma), subset, data_name,
                                    r.batch, r.nll_stride, static_cast<uint64_t>(r.seed), r.sampler.clip_x0,
                                    count_progress("VLB images"), &comm);
  std::printf("%s", format_nll(s).c_str());
}

// The images the quality path measures, their name in the report, and the class each was
// asked for (conditional models and labelled files only).
struct ImagesToMeasure {
  Tensor images;
  std::string name;
  std::vector<int64_t> labels;
};

// --n images from the checkpoint's model, with --class and --guidance for a conditional one.
ImagesToMeasure sample_images(const EvalRun& r, const LoadedModel& m, const SigmaChoice& sigma, Communicator& comm) {
  const UNetConfig& mc = m.model->config();
  const bool conditional = mc.num_classes > 0;
  DDPM_CHECK(conditional || (!r.given.count("--class") && !r.given.count("--guidance")),
             r.checkpoint << " is an unconditional model; --class and --guidance need a --conditional checkpoint");
  DDPM_CHECK(r.class_label >= -1 && r.class_label < std::max<int64_t>(mc.num_classes, 1),
             "--class " << r.class_label << ": use 0.." << mc.num_classes - 1 << " or -1 (image i has class i mod "
                        << mc.num_classes << ")");
  DDPM_CHECK(std::isfinite(r.guidance), "--guidance must be a finite number");
  const Sampler sampler = make_sampler(m.schedule, static_cast<uint64_t>(r.seed), r.sampler);
  ImagesToMeasure out;
  std::string how = describe_sampler(r.sampler, m.schedule.T, sigma);
  std::function<int64_t(int64_t)> label_of;
  if (conditional) {
    for (int64_t i = 0; i < r.n; i++) out.labels.push_back(r.class_label >= 0 ? r.class_label : i % mc.num_classes);
    label_of = [&out](int64_t i) { return out.labels[i]; };
    std::ostringstream os;
    os << ", " << (r.class_label >= 0 ? "class " + std::to_string(r.class_label) : "class i mod " + std::to_string(mc.num_classes))
       << ", w " << r.guidance;
    how += os.str();
  }
  std::fprintf(stderr, "sampling %lld images from %s (%s)\n", static_cast<long long>(r.n), r.checkpoint.c_str(),
               how.c_str());
  const BatchModelFn model = unet_batch_model(*m.model, m.schedule, m.predict, sigma, label_of, r.guidance);
  BatchedSampleOptions o;
  o.sample.clip_x0 = r.sampler.clip_x0;
  o.batch = r.batch;
  o.chain_n = 0;
  o.comm = &comm;  // MPI ranks share the images
  const EvalProgress progress = count_progress("sampled");
  const int64_t n = r.n;
  o.progress = [&progress, n](int64_t first, int64_t count, int64_t t) {
    if (t == 1) progress(first + count, n);  // Algorithm 2 only: DDIM reports nothing
  };
  out.images = sample_in_batches(sampler, model, r.n, {1, 28, 28}, o).x0;
  out.name = "samples (" + how + ")";
  return out;
}

// FLD, precision/recall and classes of the images, between the floor and ceiling rows; and
// the agreement with the requested classes when there are labels.
void report_quality(const EvalRun& r, const LoadedModel& m, const SigmaChoice& sigma, Communicator& comm) {
  // A samples file is checked before the classifier and the reference set are read.
  SamplesFile file;
  if (!r.samples.empty()) file = load_samples(r.samples);
  const std::unique_ptr<Classifier> classifier = load_classifier(r.classifier);
  const MnistSplit test_set = load_mnist(mnist_dir(r), "test");
  const MnistSplit train_set = load_mnist(mnist_dir(r), "train");
  const uint64_t seed = static_cast<uint64_t>(r.seed);
  const EvalReference reference = make_reference(*classifier, test_set.images, "MNIST test set", seed);
  const ImagesToMeasure s = m.model ? sample_images(r, m, sigma, comm)
                                    : ImagesToMeasure{file.samples, "samples (" + r.samples + ")", file.labels};
  const int64_t N = s.images.size(0);
  DDPM_CHECK(N <= train_set.images.size(0), "N = " << N << " exceeds the training set");
  std::vector<QualityRow> rows;
  rows.push_back(evaluate_images(*classifier, reference, s.images, s.name));
  rows.push_back(evaluate_images(*classifier, reference, random_subset(train_set.images, N, seed),
                                 "MNIST train images (floor)"));
  rows.push_back(evaluate_images(*classifier, reference, noise_images(N, seed), "N(0, 1) noise images (ceiling)"));
  std::printf("%s", format_quality(rows, reference).c_str());
  if (s.labels.empty()) return;
  const ClassAgreement a = class_agreement(classify(*classifier, prepare_images(s.images)).probs, s.labels);
  if (a.counted > 0) std::printf("%s", format_agreement(a, s.name).c_str());
  else std::printf("class agreement: every label is the null class (unconditional draws), nothing to compare\n");
}

}  // namespace

int eval_run(const EvalRun& r) {
  SingleProcess one;
  return eval_run(r, one);
}

int eval_run(const EvalRun& r, Communicator& comm) {
  set_num_threads(check_threads_flag(r.threads));
  if (r.train_classifier) {
    DDPM_CHECK(comm.size() == 1, "--train-classifier runs on one process, not over MPI ranks");
    return train_eval_classifier(r);
  }
  check_eval_flags(r);
  LoadedModel m;
  SigmaChoice sigma;
  if (!r.checkpoint.empty()) {
    m = load_checkpoint_model(r.checkpoint, r.use_ema);
    sigma = checkpoint_sigma(m.model->config(), m.metadata, r.variance);
    const UNetConfig& mc = m.model->config();
    DDPM_CHECK(r.nll || (mc.in_ch == 1 && mc.image_size == 28),
               r.checkpoint << " makes " << mc.in_ch << "x" << mc.image_size << "x" << mc.image_size
                            << " images; the quality metrics use an MNIST classifier (1x28x28 only): use --nll for "
                               "bits/dim, or ./sample for the images");
  }
  if (r.nll) report_nll(r, m, sigma, comm);
  else report_quality(r, m, sigma, comm);
  return 0;
}

}  // namespace ddpm
