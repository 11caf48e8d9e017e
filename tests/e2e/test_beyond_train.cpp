// The "Beyond Algorithm 2" options through the Trainer on a minimal U-Net and 8x8 bars:
// conditional + guidance end to end, learned variance (L_hybrid), --predict v, and
// importance-sampled timesteps with an exact checkpoint resume.
#include <cmath>

#include "ddpm/core/check.h"
#include "ddpm/app/sampling.h"
#include "ddpm/extensions/guidance.h"
#include "ddpm/core/parallel.h"
#include "ddpm/extensions/prediction_targets.h"
#include "ddpm/train/trainer.h"
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
  return w;
}

double head_tail_ratio(const std::vector<double>& l) {
  double head = 0, tail = 0;
  for (int i = 0; i < 8; i++) head += l[i], tail += l[l.size() - 8 + i];
  return tail / head;
}

}  // namespace

TEST_CASE("beyond_train: a conditional model trains, its class embedding learns, guided sampling runs") {
  set_num_threads(1);
  TrainConfig c = bars_config();
  c.conditional = true;
  Trainer trainer(c, bars());
  std::vector<double> losses;
  for (int i = 0; i < 40; i++) losses.push_back(trainer.step());
  CHECK(head_tail_ratio(losses) < 0.8);  // as the unconditional smoke test
  UNet& m = trainer.model();
  REQUIRE(m.config().num_classes == 10);
  ClassGridOptions o;
  o.per_row = 1;
  o.guidance = 2.0;
  o.sampler.sampler = "ddim";
  o.sampler.ddim_steps = 5;
  Tensor grid = sample_class_grid(m, trainer.schedule(), o);
  CHECK(grid.shape() == Shape{10, 1, 8, 8});
  for (int64_t j = 0; j < grid.numel(); j++) REQUIRE(std::isfinite(grid[j]));
  o.guidance = 0.0;
  Tensor plain = sample_class_grid(m, trainer.schedule(), o);
  double diff = 0;
  for (int64_t j = 0; j < grid.numel(); j++) diff += std::fabs(grid[j] - plain[j]);
  CHECK(diff > 0);  // guidance changes the samples
}

TEST_CASE("beyond_train: learned variance trains on L_hybrid and its checkpoint records the option") {
  set_num_threads(1);
  testing::TempDir dir;
  TrainConfig c = bars_config();
  c.learned_variance = true;
  Trainer trainer(c, bars());
  CHECK(trainer.model().config().out_ch() == 2);
  TrainConfig weighted = c;
  weighted.loss = LossType::weighted;  // L_hybrid has its own weighting: refused up front
  CHECK_THROWS_AS(Trainer(weighted, bars()), Error);
  std::vector<double> losses;
  for (int i = 0; i < 40; i++) losses.push_back(trainer.step());
  for (double l : losses) REQUIRE(std::isfinite(l));
  CHECK(head_tail_ratio(losses) < 0.8);
  trainer.save_checkpoint(dir / "lv.safetensors");
  // A run without the option refuses the checkpoint, naming the key.
  Trainer plain(bars_config(), bars());
  try {
    plain.load_checkpoint(dir / "lv.safetensors");
    FAIL("no error");
  } catch (const Error& e) {
    CHECK(std::string(e.what()).find("learned_variance") != std::string::npos);
  }
  // The variance channels are used by the bound: the learned Sigma evaluates.
  std::unique_ptr<UNet> ema = trainer.ema_model();
  VlbOptions vo;
  vo.stride = 10;
  Tensor x0 = bars().images;
  SigmaChoice learned;
  learned.learned = true;
  const ModelFn model = unet_model(*ema, trainer.schedule(), PredictionTarget::eps, learned);
  VlbResult r = vlb_terms(trainer.schedule(), model, Tensor::from({2, 1, 8, 8}, std::vector<float>(x0.data(), x0.data() + 128)), 1, vo);
  CHECK(std::isfinite(r.mean_bpd));
}

TEST_CASE("beyond_train: --predict v trains, and importance-sampled timesteps resume exactly") {
  set_num_threads(1);
  {
    TrainConfig c = bars_config();
    c.predict = PredictionTarget::v;
    Trainer trainer(c, bars());
    std::vector<double> losses;
    for (int i = 0; i < 40; i++) losses.push_back(trainer.step());
    CHECK(head_tail_ratio(losses) < 0.8);
  }
  testing::TempDir dir;
  TrainConfig c = bars_config();
  c.T = 5;           // the history fills (10 values per t) within the run
  c.timesteps = TimestepSampling::importance;
  c.learned_variance = true;
  Trainer straight(c, bars());
  for (int i = 0; i < 14; i++) straight.step();
  {
    Trainer first(c, bars());
    for (int i = 0; i < 9; i++) first.step();
    first.save_checkpoint(dir / "a.safetensors");
  }
  Trainer resumed(c, bars());
  resumed.load_checkpoint(dir / "a.safetensors");
  for (int i = 0; i < 5; i++) resumed.step();
  CHECK(weights(resumed) == weights(straight));
}
