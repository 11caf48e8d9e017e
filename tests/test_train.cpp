// The training loop end to end on a minimal U-Net and synthetic 8x8 "digits": the loss
// falls, runs repeat bit for bit at any thread count, and a resumed run equals an
// uninterrupted one.
#include <cmath>

#include "ddpm/check.h"
#include "ddpm/io/safetensors.h"
#include "ddpm/parallel.h"
#include "ddpm/train.h"
#include "tests/temp_dir.h"
#include "tests/bars.h"
#include "tests/testing.h"

using namespace ddpm;

namespace {

using testing::bars;
using testing::bars_config;

std::vector<float> weights(Trainer& t) {
  std::vector<float> w;
  for (Parameter* p : t.model().parameters()) {
    auto v = p->var->value.to_vector();
    w.insert(w.end(), v.begin(), v.end());
  }
  for (Tensor& s : t.ema().shadow()) {
    auto v = s.to_vector();
    w.insert(w.end(), v.begin(), v.end());
  }
  return w;
}

}  // namespace

TEST_CASE("train: a seeded smoke run's loss falls and repeats bit for bit at 1 and 2 threads") {
  std::vector<float> first_weights;
  std::vector<double> first_losses;
  for (int threads : {1, 2}) {
    set_num_threads(threads);
    Trainer trainer(bars_config(), bars());
    std::vector<double> losses;
    for (int i = 0; i < 40; i++) losses.push_back(trainer.step());
    for (double l : losses) REQUIRE(std::isfinite(l));
    double head = 0, tail = 0;
    for (int i = 0; i < 8; i++) head += losses[i], tail += losses[32 + i];
    // L_simple starts near 1 (the eps-MSE of a zero predictor); 40 steps on bars must cut it.
    CHECK(tail < 0.8 * head);
    if (first_weights.empty()) {
      first_weights = weights(trainer);
      first_losses = losses;
    } else {
      CHECK(losses == first_losses);
      CHECK(weights(trainer) == first_weights);
    }
  }
  set_num_threads(1);
}

TEST_CASE("train: N steps, checkpoint, resume, M steps equals N + M steps, bit for bit") {
  testing::TempDir dir;
  Trainer straight(bars_config(), bars());
  for (int i = 0; i < 12; i++) straight.step();

  {
    Trainer first(bars_config(), bars());
    for (int i = 0; i < 7; i++) first.step();
    first.save_checkpoint(dir / "a.safetensors");
  }
  Trainer resumed(bars_config(), bars());
  resumed.load_checkpoint(dir / "a.safetensors");
  CHECK(resumed.steps_done() == 7);
  for (int i = 0; i < 5; i++) resumed.step();
  CHECK(weights(resumed) == weights(straight));
  CHECK(resumed.epoch_progress() == straight.epoch_progress());
}

TEST_CASE("train: a checkpoint from another config is refused with a message naming the difference") {
  testing::TempDir dir;
  Trainer a(bars_config(), bars());
  a.step();
  a.save_checkpoint(dir / "a.safetensors");
  TrainConfig other = bars_config();
  other.lr = 1e-4;
  Trainer b(other, bars());
  try {
    b.load_checkpoint(dir / "a.safetensors");
    FAIL("no error");
  } catch (const Error& e) {
    CHECK(std::string(e.what()).find("train.lr") != std::string::npos);
  }
  // And a plain safetensors file without the training state is not a checkpoint.
  save_safetensors(dir / "plain.safetensors", {{"w", Tensor({2})}});
  CHECK_THROWS_AS(b.load_checkpoint(dir / "plain.safetensors"), Error);
}

TEST_CASE("train: load_model reads the EMA weights and the config back") {
  testing::TempDir dir;
  Trainer a(bars_config(), bars());
  for (int i = 0; i < 3; i++) a.step();
  a.save_checkpoint(dir / "a.safetensors");
  std::map<std::string, std::string> meta;
  auto model = load_model(dir / "a.safetensors", /*use_ema=*/true, &meta);
  CHECK(meta.at("config.name") == "minimal");
  auto ema = a.ema_model();
  ParamList p = model->parameters(), q = ema->parameters();
  REQUIRE(p.size() == q.size());
  for (size_t i = 0; i < p.size(); i++) CHECK(p[i]->var->value.to_vector() == q[i]->var->value.to_vector());
}

TEST_CASE("train: a NaN in the data stops the step with a report naming the step, t and the first bad op") {
  Dataset d = bars();
  for (int64_t i = 0; i < d.images.numel(); i++) d.images[i] = NAN;
  Trainer t(bars_config(), d);
  try {
    t.step();
    FAIL("no error");
  } catch (const NonFiniteError& e) {
    const std::string msg = e.what();
    CHECK(msg.find("step 1") != std::string::npos);
    CHECK(msg.find("t = [") != std::string::npos);
    CHECK(msg.find("First non-finite value: op #") != std::string::npos);
  }
  CHECK(t.steps_done() == 0);
}
