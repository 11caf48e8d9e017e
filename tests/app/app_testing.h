// tests/app/app_testing.h: what the tests of ddpm/app share: a minimal U-Net checkpoint that
// stands in for a trained model, bit-for-bit tensor equality, and the captured output of a
// run (the tools report on stdout, progress on stderr).
#pragma once

#include <doctest/doctest.h>
#include <fcntl.h>
#include <unistd.h>

#include <cstdio>
#include <map>
#include <string>

#include "ddpm/core/rng.h"
#include "ddpm/extensions/prediction_targets.h"
#include "ddpm/io/safetensors.h"
#include "ddpm/model/unet.h"
#include "ddpm/train/config.h"
#include "tests/temp_dir.h"

namespace ddpm {
namespace testing {

// Saves a minimal U-Net as a training checkpoint would: weights, EMA weights ("ema."
// prefix, a different perturbation so the two are told apart) and the config metadata
// (config.*, and train.* with the linear schedule and this T). The zero-initialized layers
// are perturbed too, so eps_theta depends on x_t, t and labels. image_size 28 makes a model
// of MNIST's size, for what ./eval measures.
inline void save_minimal_checkpoint(const std::string& path, int64_t num_classes, int64_t T,
                                    const std::string& predict = "eps", int64_t image_size = 8) {
  UNetConfig c = unet_config("minimal");
  c.num_classes = num_classes;
  c.image_size = image_size;
  UNet net(c, 3);
  Generator gen(17);
  NamedTensors tensors, ema;
  for (Parameter* p : net.parameters()) {
    Tensor w = p->var->value.clone();
    for (int64_t i = 0; i < w.numel(); i++) w[i] += 0.05f * gen.normal();
    Tensor e = w.clone();
    for (int64_t i = 0; i < e.numel(); i++) e[i] += 0.05f * gen.normal();
    tensors.emplace_back(p->name, w);
    ema.emplace_back("ema." + p->name, e);
  }
  tensors.insert(tensors.end(), ema.begin(), ema.end());
  TrainConfig tc;
  tc.model = "minimal";
  tc.schedule = "linear";
  tc.T = T;
  tc.conditional = num_classes > 0;
  tc.predict = parse_target(predict);
  std::map<std::string, std::string> meta = c.to_metadata();
  for (auto& kv : tc.to_metadata()) meta.insert(kv);
  save_safetensors(path, tensors, meta);
}

// A copy of the checkpoint `from` without its train.* metadata: a weights file, which
// records no schedule (as tools/torch_reference.py writes them).
inline void save_without_train_config(const std::string& from, const std::string& to) {
  const SafeTensors st = load_safetensors(from);
  std::map<std::string, std::string> meta;
  for (const auto& kv : st.metadata)
    if (kv.first.compare(0, 6, "train.") != 0) meta.insert(kv);
  save_safetensors(to, st.tensors, meta);
}

// Same shape and every value equal (== on each float: the same number, to the last bit).
inline bool bit_equal(const Tensor& a, const Tensor& b) {
  if (a.shape() != b.shape()) return false;
  for (int64_t i = 0; i < a.numel(); i++)
    if (!(a[i] == b[i])) return false;
  return true;
}

// What the process writes to stdout (fd 1) or stderr (fd 2) while a CapturedOutput lives:
// the file descriptor itself, so printf and everything below it; handed back by text(),
// which ends the capture.
class CapturedOutput {
 public:
  explicit CapturedOutput(int fd = 1) : fd_(fd), file_(dir_ / "output") {
    flush();
    saved_ = dup(fd_);
    const int to = open(file_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    REQUIRE((saved_ >= 0 && to >= 0));
    REQUIRE(dup2(to, fd_) == fd_);
    close(to);
  }
  ~CapturedOutput() { restore(); }
  CapturedOutput(const CapturedOutput&) = delete;
  CapturedOutput& operator=(const CapturedOutput&) = delete;
  std::string text() {
    restore();
    const std::vector<uint8_t> bytes = read_bytes(file_);
    return std::string(bytes.begin(), bytes.end());
  }

 private:
  void flush() const { std::fflush(fd_ == 2 ? stderr : stdout); }
  void restore() {
    if (saved_ < 0) return;
    flush();
    dup2(saved_, fd_);
    close(saved_);
    saved_ = -1;
  }
  int fd_;
  TempDir dir_;
  std::string file_;
  int saved_ = -1;
};

}  // namespace testing
}  // namespace ddpm
