// Tests of ./train_mnist's library side (ddpm/app/train_run.h): its flags, --preset, where the
// run ends (--minutes) and the grids it writes, driven as the tool drives them. The dataset is
// 16 synthetic 28x28 images in IDX files; the model is tiny at T = 20, batch 4.
#include <atomic>
#include <cstdio>
#include <string>
#include <vector>

#include "ddpm/app/train_run.h"
#include "ddpm/core/check.h"
#include "ddpm/io/safetensors.h"
#include "tests/temp_dir.h"
#include "tests/testing.h"

using namespace ddpm;
using testing::TempDir;

namespace {

void put_be32(std::vector<uint8_t>& out, uint32_t v) {
  for (int s = 24; s >= 0; s -= 8) out.push_back(static_cast<uint8_t>(v >> s));
}

// train-{images,labels} IDX files of n images in dir.
void write_mnist_like(const TempDir& dir, uint32_t n) {
  std::vector<uint8_t> images, labels;
  put_be32(images, 0x00000803), put_be32(images, n), put_be32(images, 28), put_be32(images, 28);
  for (uint32_t j = 0; j < n * 784; j++) images.push_back(static_cast<uint8_t>((j * 37) % 256));
  put_be32(labels, 0x00000801), put_be32(labels, n);
  for (uint32_t i = 0; i < n; i++) labels.push_back(static_cast<uint8_t>(i % 10));
  testing::write_bytes(dir / "train-images-idx3-ubyte", images);
  testing::write_bytes(dir / "train-labels-idx1-ubyte", labels);
}

// Parses a command line as ./train_mnist does.
TrainRun parse(std::vector<std::string> args) {
  args.insert(args.begin(), "train_mnist");
  std::vector<const char*> argv;
  for (const std::string& a : args) argv.push_back(a.c_str());
  TrainRun run;
  TrainRunFlags flags(&run);
  const bool parsed = flags.parse(static_cast<int>(argv.size()), argv.data());  // false: --help
  CHECK(parsed);
  return run;
}

}  // namespace

TEST_CASE("train_run: --preset starts the config, and the flags given after it win") {
  const TrainRun paper = parse({"--preset", "paper", "--lr", "5e-4"});
  CHECK(paper.config.lr == 5e-4);  // given
  CHECK(paper.config.batch == 128);  // the preset's
  CHECK(paper.config.warmup == 5000);
  CHECK(paper.config.ema == 0.9999);
  CHECK(paper.config_flags_given == std::vector<std::string>{"--lr"});
  const TrainRun plain = parse({"--steps", "30", "--lr-schedule", "cosine"});
  CHECK(plain.config.steps == 30);
  CHECK(plain.config.lr_schedule == LrSchedule::cosine);
  CHECK(plain.config.batch == TrainConfig().batch);
  CHECK_THROWS_WITH_AS(parse({"--preset", "fast"}), doctest::Contains("unknown --preset 'fast'"), Error);
  CHECK_THROWS_WITH_AS(parse({"--lr-schedule", "step"}), doctest::Contains("--lr-schedule"), Error);
}

TEST_CASE("train_run: --minutes chooses the target step from the measured speed and records it; grids say their sampler") {
  TempDir data, out;
  write_mnist_like(data, 16);
  TrainRun run = parse({"--data", data.path, "--out", out.path, "--batch", "4", "--T", "20", "--threads", "1",
                        "--minutes", "0.001", "--sample-every", "21", "--sample-n", "1", "--ckpt-every", "1000",
                        "--log-every", "1000"});
  CHECK(run.config.minutes == 0.001);
  const std::atomic<bool> interrupted{false};
  REQUIRE(train_run(run, interrupted) == 0);
  // 0.06 s of training is spent before the speed is measured: the target is the step that
  // measured it, kSpeedSteps + 1, and the checkpoint records it with the budget.
  const std::string ckpt = "ckpt-" + std::string(8 - std::to_string(kSpeedSteps + 1).size(), '0') +
                           std::to_string(kSpeedSteps + 1) + ".safetensors";
  const auto names = out.list();
  REQUIRE(std::find(names.begin(), names.end(), ckpt) != names.end());
  const auto meta = load_safetensors(out / ckpt).metadata;
  CHECK(meta.at("train.steps") == std::to_string(kSpeedSteps + 1));
  CHECK(meta.at("train.minutes") == "0.001");
  // The grid at step 21 is DDIM (T = 20 steps here) and says so; the final grid is Algorithm 2.
  CHECK(std::find(names.begin(), names.end(), "samples-00000021-ddim20.png") != names.end());
  CHECK(std::find(names.begin(), names.end(), "samples.png") != names.end());
  // --epochs and --minutes both choose the end: refused up front.
  TrainRun both = run;
  both.epochs = 1;
  CHECK_THROWS_WITH_AS(train_run(both, interrupted), doctest::Contains("give one"), Error);
}
