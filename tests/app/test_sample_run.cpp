// Tests of ./sample as a library call (ddpm/app/sample_run.h): SampleRunFlags parses the
// tool's command lines and sample_run writes the figures, which must be the images the
// library's own calls draw, byte for byte. A minimal U-Net (8x8 images, T = 10) stands in for
// a trained model; forward.png reads a tiny IDX test split.
#include <algorithm>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "ddpm/app/checkpoint_model.h"
#include "ddpm/app/figures.h"
#include "ddpm/app/sample_run.h"
#include "ddpm/app/sampling.h"
#include "ddpm/core/check.h"
#include "ddpm/data/mnist.h"
#include "ddpm/io/png.h"
#include "ddpm/io/safetensors.h"
#include "tests/app/app_testing.h"
#include "tests/idx_files.h"
#include "tests/temp_dir.h"
#include "tests/testing.h"

using namespace ddpm;
using testing::bit_equal;
using testing::CapturedOutput;
using testing::list_files;
using testing::save_minimal_checkpoint;
using testing::TempDir;

namespace {

// The run a command line gives, as ./sample parses it.
SampleRun parse(const std::vector<std::string>& args) {
  SampleRun run;
  SampleRunFlags flags(&run);
  REQUIRE(flags.parse(args));
  return run;
}

// sample_run with its report captured. (Not called inside REQUIRE, which would turn the
// ddpm::Error of a refused flag into a test failure.)
std::string run_quietly(const SampleRun& run) {
  CapturedOutput out;
  const int code = sample_run(run);
  CHECK(code == 0);
  return out.text();
}

// The bytes write_image_grid writes for these images.
std::vector<uint8_t> png_of(const Tensor& images, int64_t columns) {
  const Image img = image_grid(images, columns);
  return encode_png(img.width, img.height, img.channels, img.pixels.data());
}

bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

}  // namespace

TEST_CASE("sample_run: samples.png, the samples file, chain.png and chain.gif are Algorithm 2's images of the checkpoint") {
  TempDir dir;
  const std::string ckpt = dir / "ckpt.safetensors", out = dir / "out", file = dir / "s.safetensors";
  save_minimal_checkpoint(ckpt, 0, 10);
  const SampleRun run = parse({"--checkpoint", ckpt, "--n", "5", "--batch", "2", "--chain", "--gif", "--fig-rows", "3",
                               "--fig-cols", "4", "--gif-frames", "3", "--save-samples", file, "--out", out,
                               "--threads", "1"});
  const std::string report = run_quietly(run);
  CHECK(list_files(out) == std::vector<std::string>{"chain.gif", "chain.png", "samples.png"});
  CHECK(contains(report, "model minimal"));
  CHECK(contains(report, "EMA weights, predicts eps), linear schedule T = 10, Algorithm 2, 10 steps, fixed_large, seed 0"));
  CHECK(contains(report, "wrote " + out + "/chain.png (3 samples, x_t at t = 10, 7, 3, 0)"));

  // The same images from the library directly: one batch, EMA weights, seed 0.
  const LoadedModel m = load_checkpoint_model(ckpt, true);
  SampleOptions keep;
  keep.keep_t = evenly_spaced_t(10, 0, 4);
  const SampleResult r = sample(m.schedule, unet_model(*m.model, m.schedule), {5, 1, 8, 8}, 0, keep);
  CHECK(testing::read_bytes(out + "/samples.png") == png_of(r.x0, grid_columns(5)));
  CHECK(testing::read_bytes(out + "/chain.png") == png_of(chain_figure(r, 3), 4));
  const std::vector<uint8_t> gif = testing::read_bytes(out + "/chain.gif");
  REQUIRE(gif.size() > 6);
  CHECK(std::string(gif.begin(), gif.begin() + 6) == "GIF89a");

  // The samples file: x0 clamped to [-1, 1], no labels (unconditional), and how it was drawn.
  const SafeTensors st = load_safetensors(file);
  Tensor clamped = r.x0.clone();
  for (int64_t i = 0; i < clamped.numel(); i++) clamped[i] = std::min(1.0f, std::max(-1.0f, clamped[i]));
  CHECK(bit_equal(st.at("samples"), clamped));
  CHECK(st.find("labels") == nullptr);
  CHECK(st.metadata.at("sampler") == "Algorithm 2, 10 steps, fixed_large");
  CHECK(st.metadata.at("checkpoint") == ckpt);
  CHECK(st.metadata.at("guidance") == "0");
}

TEST_CASE("sample_run: a conditional checkpoint's class, guidance and class grids, one per --guidance-list weight") {
  TempDir dir;
  const std::string ckpt = dir / "cond.safetensors", out = dir / "out", file = dir / "s.safetensors";
  save_minimal_checkpoint(ckpt, 10, 10);
  const std::string report = run_quietly(parse({"--checkpoint", ckpt, "--n", "4", "--class", "7", "--guidance", "2",
                                                "--class-grid", "--fig-cols", "1", "--guidance-list", "0,1.5",
                                                "--save-samples", file, "--out", out}));
  CHECK(contains(report, "conditional model: class 7, guidance w = 2"));
  CHECK(list_files(out) == std::vector<std::string>{"class_grid_w0.png", "class_grid_w1.5.png", "samples.png"});

  const LoadedModel m = load_checkpoint_model(ckpt, true);
  const std::vector<int64_t> sevens(4, 7);
  const ModelFn guided = unet_model(*m.model, m.schedule, m.predict, SigmaChoice{}, &sevens, 2.0);
  CHECK(testing::read_bytes(out + "/samples.png") == png_of(sample(m.schedule, guided, {4, 1, 8, 8}, 0).x0, 2));
  for (double w : {0.0, 1.5}) {
    ClassGridOptions o;
    o.per_row = 1;
    o.guidance = w;
    const std::string name = w == 0.0 ? "/class_grid_w0.png" : "/class_grid_w1.5.png";
    CHECK(testing::read_bytes(out + name) == png_of(sample_class_grid(*m.model, m.schedule, o), 1));
  }
  CHECK(testing::read_bytes(out + "/class_grid_w0.png") != testing::read_bytes(out + "/class_grid_w1.5.png"));

  const SafeTensors st = load_safetensors(file);
  const Tensor& labels = st.at("labels");
  REQUIRE(labels.shape() == Shape{4});
  for (int64_t i = 0; i < 4; i++) CHECK(labels[i] == 7.0f);
  CHECK(st.metadata.at("guidance") == std::to_string(2.0));

  // --class null: unconditional draws, labelled with the null class, no guidance.
  run_quietly(parse({"--checkpoint", ckpt, "--n", "2", "--class", "null", "--save-samples", file, "--out", out}));
  const SafeTensors null_st = load_safetensors(file);
  CHECK(null_st.at("labels")[0] == 10.0f);
  CHECK(null_st.at("labels")[1] == 10.0f);
  CHECK(null_st.metadata.at("guidance") == "0");
}

TEST_CASE("sample_run: forward.png without a checkpoint, under --schedule and --T") {
  TempDir dir;
  const std::string data = dir / "data", out = dir / "out";
  REQUIRE(std::filesystem::create_directory(data));
  testing::write_mnist_split(data, "t10k", 3);
  const std::string report = run_quietly(parse({"--forward", "--schedule", "cosine", "--T", "10", "--data", data,
                                                "--fig-rows", "2", "--fig-cols", "3", "--seed", "5", "--out", out}));
  CHECK(contains(report, "wrote " + out + "/forward.png (2 test images of MNIST under the cosine schedule, T = 10, at t = 0, 5, 10;"));
  CHECK(list_files(out) == std::vector<std::string>{"forward.png"});

  const Tensor digits = slice_batch(load_mnist(data, "test").images, 0, 2);
  const Tensor fig = forward_figure(make_schedule("cosine", 10), digits, {0, 5, 10}, 5);
  CHECK(testing::read_bytes(out + "/forward.png") == png_of(fig, 3));
}

TEST_CASE("sample_run: flags are checked before any work, and the checkpoint's schedule wins over --schedule and --T") {
  TempDir dir;
  const std::string ckpt = dir / "ckpt.safetensors", out = dir / "out";
  save_minimal_checkpoint(ckpt, 0, 10);
  auto error = [](const std::vector<std::string>& args) { return testing::error_of([&] { run_quietly(parse(args)); }); };
  CHECK(contains(error({"--out", out}), "--checkpoint PATH is required (only --forward works without one)"));
  CHECK(contains(error({"--forward", "--chain", "--out", out}), "--chain needs --checkpoint PATH"));
  CHECK(contains(error({"--checkpoint", ckpt, "--sampler", "ddim", "--gif", "--out", out}),
                 "--chain and --gif draw Algorithm 2's chain"));
  CHECK(contains(error({"--checkpoint", ckpt, "--guidance-list", "1", "--out", out}), "--guidance-list needs --class-grid"));
  CHECK(contains(error({"--checkpoint", ckpt, "--n", "0", "--out", out}), "--n 0 and --batch 64 must be at least 1"));
  CHECK(contains(error({"--checkpoint", ckpt, "--threads", "300", "--out", out}), "--threads 300 not in 1..256"));
  CHECK(contains(error({"--checkpoint", ckpt, "--schedule", "cosine", "--out", out}),
                 "was trained with the linear schedule and T = 10; drop --schedule/--T"));
  CHECK(contains(error({"--checkpoint", ckpt, "--class", "3", "--out", out}),
                 "is an unconditional model (trained without --conditional); --class needs a class-conditional checkpoint"));
  CHECK(contains(error({"--checkpoint", ckpt, "--sampler", "ddim", "--ddim-steps", "11", "--out", out}), "11"));
  // None of these wrote a figure.
  CHECK_FALSE(std::filesystem::exists(out + "/samples.png"));

  // A weights file records no schedule: --schedule and --T are needed, and then used.
  const std::string weights = dir / "weights.safetensors";
  testing::save_without_train_config(ckpt, weights);
  CHECK(contains(error({"--checkpoint", weights, "--T", "10", "--out", out}),
                 "does not record its schedule (train.schedule, train.T); pass --schedule and --T"));
  const std::string report = run_quietly(parse({"--checkpoint", weights, "--schedule", "linear", "--T", "10", "--n", "2",
                                                "--out", out}));
  CHECK(contains(report, "linear schedule T = 10"));
  // The same weights and schedule as the training checkpoint: the same images.
  const std::vector<uint8_t> from_weights = testing::read_bytes(out + "/samples.png");
  run_quietly(parse({"--checkpoint", ckpt, "--n", "2", "--out", out}));
  CHECK(testing::read_bytes(out + "/samples.png") == from_weights);
}
