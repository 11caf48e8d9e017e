// Tests of ./eval as a library call (ddpm/app/eval_run.h): EvalRunFlags parses the tool's
// command lines and eval_run prints the reports, which must be what the evaluation library
// computes from the same images. A minimal U-Net of MNIST's size (28x28, T = 10) stands in
// for a trained model, an untrained classifier for the evaluation classifier, and small IDX
// splits (12 images each) for MNIST.
#include <filesystem>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "ddpm/app/checkpoint_model.h"
#include "ddpm/app/eval_run.h"
#include "ddpm/app/sample_run.h"
#include "ddpm/app/sampling.h"
#include "ddpm/core/check.h"
#include "ddpm/data/mnist.h"
#include "ddpm/eval/classifier.h"
#include "ddpm/eval/evaluate.h"
#include "tests/app/app_testing.h"
#include "tests/idx_files.h"
#include "tests/temp_dir.h"
#include "tests/testing.h"

using namespace ddpm;
using testing::CapturedOutput;
using testing::save_minimal_checkpoint;
using testing::TempDir;

namespace {

// A folder with a checkpoint (conditional or not), an untrained evaluation classifier and
// 12-image train and test splits.
struct EvalFolder {
  TempDir dir;
  std::string data = dir / "data", classifier = dir / "classifier.safetensors", ckpt = dir / "ckpt.safetensors";
  explicit EvalFolder(int64_t num_classes) {
    REQUIRE(std::filesystem::create_directory(data));
    testing::write_mnist_split(data, "train", 12);
    testing::write_mnist_split(data, "t10k", 12);
    Classifier untrained(1);
    save_classifier(classifier, untrained);
    save_minimal_checkpoint(ckpt, num_classes, 10, "eps", /*image_size=*/28);
  }
};

// eval_run on a command line, as ./eval parses it; its exit code, and its stdout in *report
// (its progress lines on stderr are dropped).
int run_eval(const std::vector<std::string>& args, std::string* report = nullptr) {
  EvalRun run;
  EvalRunFlags flags(&run);
  REQUIRE(flags.parse(args));
  CapturedOutput out, progress(2);
  const int code = eval_run(run);
  const std::string text = out.text();
  if (report) *report = text;
  return code;
}

std::string eval_error(const std::vector<std::string>& args) {
  return testing::error_of([&] { run_eval(args); });
}

bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

// The report with the samples row's name replaced by "SAMPLES" and runs of spaces folded (the
// name column's width follows the longest name), so two runs on the same images compare equal.
std::string without_name(std::string report, const std::string& name) {
  for (size_t at; (at = report.find(name)) != std::string::npos;) report.replace(at, name.size(), "SAMPLES");
  std::string folded;
  for (char c : report)
    if (!(c == ' ' && !folded.empty() && folded.back() == ' ')) folded += c;
  return folded;
}

}  // namespace

TEST_CASE("eval_run: --nll prints the VLB of the checkpoint's model on the first --nll-n test images") {
  EvalFolder f(0);
  std::string report;
  REQUIRE(run_eval({"--nll", "--checkpoint", f.ckpt, "--nll-n", "3", "--batch", "2", "--data", f.data, "--threads", "1"},
                   &report) == 0);
  const LoadedModel m = load_checkpoint_model(f.ckpt, true);
  const Tensor images = slice_batch(load_mnist(f.data, "test").images, 0, 3);
  const NllSummary expected = evaluate_nll(m.schedule, unet_model(*m.model, m.schedule), images,
                                           "MNIST test images 0..2 (a subset)", 2, 1, 0, false);
  CHECK(report == format_nll(expected));
  CHECK(contains(report, "T = 10, D = 784"));
  // All 12 images are "the MNIST test set"; more than there are is refused.
  REQUIRE(run_eval({"--nll", "--checkpoint", f.ckpt, "--nll-n", "12", "--data", f.data}, &report) == 0);
  CHECK(contains(report, "the MNIST test set"));
  CHECK(contains(eval_error({"--nll", "--checkpoint", f.ckpt, "--nll-n", "13", "--data", f.data}),
                 "--nll-n 13 exceeds the 12 test images"));
}

TEST_CASE("eval_run: a conditional checkpoint's samples measure the same sampled directly and through ./sample's file") {
  EvalFolder f(10);
  const std::string file = f.dir / "samples.safetensors";
  // ./sample --save-samples, then ./eval --samples: the way the tools hand samples over.
  {
    SampleRun s;
    SampleRunFlags flags(&s);
    REQUIRE(flags.parse({"--checkpoint", f.ckpt, "--n", "4", "--class", "2", "--guidance", "1", "--save-samples", file,
                         "--out", f.dir / "out"}));
    CapturedOutput quiet;
    REQUIRE(sample_run(s) == 0);
  }
  std::string from_file, direct;
  REQUIRE(run_eval({"--samples", file, "--data", f.data, "--classifier", f.classifier}, &from_file) == 0);
  REQUIRE(run_eval({"--checkpoint", f.ckpt, "--n", "4", "--class", "2", "--guidance", "1", "--batch", "3", "--data",
                    f.data, "--classifier", f.classifier},
                   &direct) == 0);
  const std::string how = "samples (Algorithm 2, 10 steps, fixed_large, class 2, w 1)";
  for (const std::string& row : {how, std::string("MNIST train images (floor)"), std::string("N(0, 1) noise images (ceiling)")})
    CHECK(contains(direct, "\n  " + row + " "));
  CHECK(contains(direct, "FLD against the MNIST test set (12 images)"));
  CHECK(contains(direct, "class agreement of " + how + ": "));
  // The same images (the file holds them clamped, as the measurement does), the same report.
  CHECK(without_name(direct, how) == without_name(from_file, "samples (" + file + ")"));
}

TEST_CASE("eval_run: --train-classifier trains on --data and saves --classifier with its test accuracy") {
  EvalFolder f(0);
  const std::string path = f.dir / "trained.safetensors";
  std::string report;
  const int code = run_eval({"--train-classifier", "--epochs", "1", "--seed", "4", "--data", f.data, "--classifier", path},
                            &report);
  CHECK(contains(report, "training the evaluation classifier: 1 epochs of 12 MNIST training images, batch 64, seed 4"));
  CHECK(contains(report, "saved " + path));
  std::map<std::string, std::string> meta;
  load_classifier(path, &meta);
  CHECK(meta.at("classifier.epochs") == "1");
  CHECK(meta.at("classifier.seed") == "4");
  CHECK(code == (std::stod(meta.at("classifier.test_accuracy")) >= 0.99 ? 0 : 2));  // 2: below 99%
}

TEST_CASE("eval_run: flags and checkpoints are checked before the work, naming the flag or the file") {
  EvalFolder f(0);
  CHECK(contains(eval_error({"--checkpoint", f.ckpt, "--n", "3"}), "--n must be at least 4"));
  CHECK(contains(eval_error({"--data", f.data}), "give --checkpoint CKPT (sample from a model) or --samples FILE"));
  CHECK(contains(eval_error({"--nll", "--data", f.data}), "--nll needs --checkpoint"));
  CHECK(contains(eval_error({"--samples", f.dir / "s.safetensors", "--class", "2"}),
                 "--class is for sampling from --checkpoint (not --samples or --nll)"));
  CHECK(contains(eval_error({"--checkpoint", f.ckpt, "--ddim-steps", "3"}), "--ddim-steps needs --sampler ddim"));
  CHECK(contains(eval_error({"--nll", "--checkpoint", f.ckpt, "--threads", "0"}), "--threads 0 not in 1..256"));
  CHECK(contains(eval_error({"--checkpoint", f.ckpt, "--class", "1", "--n", "4", "--data", f.data, "--classifier",
                             f.classifier}),
                 "is an unconditional model; --class and --guidance need a --conditional checkpoint"));
  // A weights file without train.* has no schedule: refused, naming the file.
  const std::string weights = f.dir / "weights.safetensors";
  testing::save_without_train_config(f.ckpt, weights);
  CHECK(contains(eval_error({"--nll", "--checkpoint", weights, "--data", f.data}), weights + ": metadata has no 'train."));
}
