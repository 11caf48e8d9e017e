// Tests of ./train_mnist's library side (ddpm/app/train_run.h): its flags, --preset, where the
// run ends (--minutes), the grids it writes, and training on a folder of RGB PNGs (then
// ./sample's figures and ./eval --nll of it), driven as the tools drive them. The datasets
// are 16 synthetic 28x28 images in IDX files, and 6 generated 20x20 RGB PNGs (two class
// sub-folders); the model is tiny at T = 20, batch 4.
#include <sys/stat.h>

#include <atomic>
#include <cstdio>
#include <string>
#include <vector>

#include "ddpm/app/eval_run.h"
#include "ddpm/app/sample_run.h"
#include "ddpm/app/train_run.h"
#include "ddpm/core/check.h"
#include "ddpm/io/png.h"
#include "ddpm/io/safetensors.h"
#include "tests/app/app_testing.h"
#include "tests/temp_dir.h"
#include "tests/testing.h"

using namespace ddpm;
using testing::TempDir;

namespace {

// n RGB PNGs of 20x20 (cropped and resized to what the run asks) in dir/<class>/ for
// `classes` classes, or in dir itself when classes is 0.
void write_rgb_pngs(const TempDir& dir, int n, int classes) {
  for (int k = 0; k < classes; k++) REQUIRE(mkdir((dir / ("class" + std::to_string(k))).c_str(), 0755) == 0);
  for (int i = 0; i < n; i++) {
    std::vector<uint8_t> pixels(20 * 20 * 3);
    for (size_t j = 0; j < pixels.size(); j++) pixels[j] = static_cast<uint8_t>((j * (7 + i) + 40 * (j % 3)) % 256);
    const std::string name = "img" + std::to_string(i) + ".png";
    write_png(classes ? dir / ("class" + std::to_string(i % classes) + "/" + name) : dir / name, 20, 20, 3,
              pixels.data());
  }
}

// A PNG file's pixels.
Image read_png(const std::string& path) {
  const std::vector<uint8_t> bytes = testing::read_bytes(path);
  return decode_png(bytes.data(), bytes.size(), path);
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
  write_rgb_pngs(data, 16, 0);  // gray at 8x8: 21 steps of the tiny U-Net stay cheap on every build
  TrainRun run = parse({"--dataset", "folder", "--data", data.path, "--image-size", "8", "--channels", "1", "--out",
                        out.path, "--batch", "4", "--T", "20", "--threads", "1", "--minutes", "0.001", "--sample-every",
                        "21", "--sample-n", "1", "--ckpt-every", "1000", "--log-every", "1000"});
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

TEST_CASE("train_run: a folder of RGB PNGs trains at --image-size 16 and samples RGB grids, chains, GIFs and bits/dim") {
  TempDir data, out;
  write_rgb_pngs(data, 6, 2);
  TrainRun run = parse({"--dataset", "folder", "--data", data.path, "--image-size", "16", "--ch", "8", "--out", out.path,
                        "--batch", "4", "--T", "20", "--threads", "1", "--steps", "2", "--sample-every", "0", "--sample-n", "4",
                        "--ckpt-every", "1000", "--log-every", "1000", "--hflip", "--conditional"});
  const std::atomic<bool> interrupted{false};
  REQUIRE(train_run(run, interrupted) == 0);
  // The checkpoint records the data's channels (the images' own: 3) and the asked size; the
  // model's attention moved with it (tiny's 7 of 28 is 4 of 16).
  const auto meta = load_safetensors(out / "ckpt-00000002.safetensors").metadata;
  CHECK(meta.at("train.image_size") == "16");
  CHECK(meta.at("train.channels") == "3");
  CHECK(meta.at("train.hflip") == "1");
  CHECK(meta.at("config.in_ch") == "3");
  CHECK(meta.at("config.image_size") == "16");
  CHECK(meta.at("config.attn_resolutions") == "4");
  // --conditional on a folder of 2 classes: the model has 2 classes and the null one, so the
  // grids (image i: class i mod 2) and ./sample draw only classes it was trained on.
  CHECK(meta.at("train.classes") == "2");
  CHECK(meta.at("config.num_classes") == "2");
  // samples.png: 4 RGB images of 16x16 in a 2x2 grid with 2-pixel padding
  const Image grid = read_png(out / "samples.png");
  CHECK(grid.channels == 3);
  CHECK(grid.width == 2 * (16 + 2) + 2);
  CHECK(grid.height == 2 * (16 + 2) + 2);

  // ./sample: samples, the chain, the GIF and the forward figure of the folder's images, in RGB
  SampleRun s;
  s.checkpoint = out / "ckpt-00000002.safetensors";
  s.out = out / "figs";
  s.n = 4;
  s.batch = 4;
  s.chain = s.gif = s.forward = true;
  s.fig_rows = 2;
  s.fig_cols = 3;
  s.gif_frames = 3;
  s.dataset = "folder";
  s.data_dir = data.path;
  s.threads = 1;
  {
    testing::CapturedOutput quiet;
    CHECK(sample_run(s) == 0);
  }
  CHECK(read_png(out / "figs/samples.png").channels == 3);
  const Image chain = read_png(out / "figs/chain.png");
  CHECK(chain.channels == 3);
  CHECK(chain.width == 3 * (16 + 2) + 2);
  const Image forward = read_png(out / "figs/forward.png");
  CHECK(forward.channels == 3);
  CHECK(forward.height == 2 * (16 + 2) + 2);
  const std::vector<uint8_t> gif = testing::read_bytes(out / "figs/chain.gif");
  REQUIRE(gif.size() > 13 + 768);
  CHECK(gif[13 + 3 * 180] == 255);  // the color cube's palette: entry 180 is pure red
  CHECK(gif[13 + 3 * 180 + 1] == 0);
  // --forward of a folder needs the checkpoint's size
  SampleRun no_model = s;
  no_model.checkpoint.clear();
  CHECK_THROWS_WITH_AS(sample_run(no_model), doctest::Contains("--forward with --dataset folder needs --checkpoint"),
                       Error);

  // ./eval --nll on the folder's images: D counts every channel, 3 * 16 * 16
  EvalRun e;
  e.nll = true;
  e.checkpoint = s.checkpoint;
  e.dataset = "folder";
  e.data_dir = data.path;
  e.nll_n = 2;
  e.batch = 2;
  e.threads = 1;
  e.nll_stride = 5;
  std::string report;
  {
    testing::CapturedOutput captured;
    CHECK(eval_run(e) == 0);
    report = captured.text();
  }
  CHECK(report.find("D = 768") != std::string::npos);
  CHECK(report.find("the images in " + data.path + ", images 0..1 (a subset)") != std::string::npos);
  // the quality metrics are an MNIST classifier's: refused for an RGB model, saying what to use
  EvalRun q;
  q.checkpoint = s.checkpoint;
  q.n = 4;
  CHECK_THROWS_WITH_AS(eval_run(q), doctest::Contains("use --nll"), Error);
}

TEST_CASE("train_run: an RGB run resumed with --hflip gives the bits of the run straight through, at any thread count") {
  TempDir data, straight, split;
  write_rgb_pngs(data, 5, 0);
  const std::vector<std::string> common = {"--dataset", "folder", "--data", data.path, "--image-size", "8",
                                           "--model", "tiny", "--ch", "8", "--batch", "2", "--T", "20",
                                           "--sample-every", "0", "--sample-n", "1", "--ckpt-every", "2",
                                           "--log-every", "1000", "--hflip", "--keep", "5"};
  auto with = [&](std::vector<std::string> more) {
    std::vector<std::string> args = common;
    args.insert(args.end(), more.begin(), more.end());
    return parse(args);
  };
  const std::atomic<bool> interrupted{false};
  testing::CapturedOutput quiet;
  REQUIRE(train_run(with({"--out", straight.path, "--steps", "4", "--threads", "1"}), interrupted) == 0);
  REQUIRE(train_run(with({"--out", split.path, "--steps", "2", "--threads", "2"}), interrupted) == 0);
  // the resume reads the size and channels from the checkpoint: no --image-size needed again
  REQUIRE(train_run(parse({"--dataset", "folder", "--data", data.path, "--out", split.path, "--resume", "auto",
                           "--steps", "4", "--threads", "2", "--sample-every", "0", "--sample-n", "1",
                           "--ckpt-every", "2", "--log-every", "1000", "--keep", "5"}),
                    interrupted) == 0);
  CHECK(testing::read_bytes(straight / "ckpt-00000004.safetensors") ==
        testing::read_bytes(split / "ckpt-00000004.safetensors"));
  CHECK(testing::read_bytes(straight / "samples.png") == testing::read_bytes(split / "samples.png"));
}

TEST_CASE("train_run: what cannot train is refused before training, saying what to do") {
  TempDir flat, many, three, out;
  write_rgb_pngs(flat, 2, 0);
  write_rgb_pngs(many, 11, 11);
  write_rgb_pngs(three, 3, 3);
  const std::atomic<bool> interrupted{false};
  auto refused = [&](std::vector<std::string> args, const std::string& message) {
    CAPTURE(message);
    args.insert(args.end(), {"--out", out.path, "--steps", "1", "--batch", "2", "--T", "10"});
    CHECK_THROWS_WITH_AS(train_run(parse(args), interrupted), doctest::Contains(message.c_str()), Error);
  };
  refused({"--dataset", "folder", "--data", flat.path, "--conditional"},
          "--conditional needs 2..10 classes, the dataset has 1 (a folder without class sub-folders): put each "
          "class's images in DIR/<class>/");
  refused({"--dataset", "folder", "--data", many.path, "--image-size", "8", "--conditional"},
          "the dataset has 11: use at most 10 class sub-folders");
  refused({"--dataset", "folder", "--data", three.path, "--image-size", "8", "--conditional", "--classes", "2"},
          "--conditional needs 2..2 classes, the dataset has 3: give --classes 3 or 0");
  refused({"--dataset", "folder", "--data", three.path, "--image-size", "8", "--conditional", "--classes", "1"},
          "--classes 1: a conditional model needs 2..10 classes");
  // The advice works: --classes 3 trains.
  TempDir out3;
  CHECK(train_run(parse({"--dataset", "folder", "--data", three.path, "--image-size", "8", "--conditional", "--classes",
                         "3", "--out", out3.path, "--steps", "1", "--batch", "2", "--T", "10", "--sample-every", "0",
                         "--sample-n", "3"}),
                  interrupted) == 0);
  refused({"--dataset", "folder", "--data", flat.path, "--model", "cifar10", "--image-size", "20"},
          "--image-size 20 is not a multiple of 8: model 'cifar10' halves the image 3 times (try 16)");
  refused({"--dataset", "folder", "--data", flat.path, "--image-size", "4"}, "--image-size 4 not in 8..64");
  refused({"--dataset", "folder", "--data", flat.path, "--image-size", "128"}, "--image-size 128 not in [0, 64]");
  refused({"--dataset", "folder", "--data", flat.path, "--channels", "2"}, "--channels 2: use 1 (gray) or 3 (RGB)");
  refused({"--dataset", "mnist", "--data", flat.path, "--image-size", "32"},
          "an image size of 32 applies to --dataset folder only");
  refused({"--dataset", "folder"}, "--dataset folder needs the folder of images: pass --data DIR");
  refused({"--dataset", "imagenet"}, "unknown --dataset 'imagenet'");
}
