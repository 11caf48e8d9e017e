// The "Beyond Algorithm 2" options through the Trainer on a minimal U-Net and 8x8 bars:
// conditional + guidance end to end, learned variance (L_hybrid), --predict v, and
// importance-sampled timesteps with an exact checkpoint resume.
#include <algorithm>
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

using testing::trainer_weights;

double head_tail_ratio(const std::vector<double>& l) {
  double head = 0, tail = 0;
  for (int i = 0; i < 8; i++) head += l[i], tail += l[l.size() - 8 + i];
  return tail / head;
}

// The class embedding [num_classes + 1, temb] of a conditional model (nullptr if none).
Parameter* class_embedding(UNet& m) {
  for (Parameter* p : m.parameters())
    if (p->name == "class_emb.weight") return p;
  return nullptr;
}

// The classes whose embedding row has a nonzero gradient after the last step: a row gets
// gradient only from the samples that carried its label.
std::vector<int64_t> classes_with_gradient(UNet& m) {
  const Tensor& g = class_embedding(m)->var->grad;
  std::vector<int64_t> seen;
  if (!g.defined()) return seen;
  const int64_t width = g.size(1);
  for (int64_t k = 0; k < g.size(0); k++)
    for (int64_t j = k * width; j < (k + 1) * width; j++)
      if (g[j] != 0.0f) {
        seen.push_back(k);
        break;
      }
  return seen;
}

// Mean of (eps_theta(x_t, t, labels) - eps)^2 over the batch.
double eps_mse(UNet& m, const Tensor& x_t, const std::vector<int64_t>& t, const std::vector<int64_t>& labels,
               const Tensor& eps) {
  const Tensor e = unet_network(m, &labels)(x_t, t);
  double sum = 0;
  for (int64_t j = 0; j < e.numel(); j++) sum += (e[j] - eps[j]) * (e[j] - eps[j]);
  return sum / e.numel();
}

// How many losses TimestepSampler::update appended to each t's history between two of its
// states (history [T, 10], oldest first; count [T]): k new values leave the last
// min(count, 10 - k) old ones at the front of the row. Entry 0 is unused; -1: no k fits.
std::vector<int64_t> draws_between(const Tensor& history0, const Tensor& count0, const Tensor& history1,
                                   const Tensor& count1) {
  const int64_t T = count0.numel(), H = TimestepSampler::kHistory;
  std::vector<int64_t> draws(T + 1, -1);
  for (int64_t t = 1; t <= T; t++) {
    const int64_t c0 = static_cast<int64_t>(count0[t - 1]), c1 = static_cast<int64_t>(count1[t - 1]);
    const float* row0 = history0.data() + (t - 1) * H;
    const float* row1 = history1.data() + (t - 1) * H;
    if (c1 < H) {
      draws[t] = c1 - c0;
      continue;
    }
    for (int64_t k = std::max<int64_t>(0, H - c0); k < H && draws[t] < 0; k++) {  // k < 10: batches of 8
      const int64_t kept = std::min(c0, H - k);
      if (std::equal(row1, row1 + kept, row0 + c0 - kept)) draws[t] = k;
    }
  }
  return draws;
}

// Pearson's chi-square of observed counts against expected ones (index 1..T).
double chi_square(const std::vector<int64_t>& observed, const std::vector<double>& expected) {
  double chi2 = 0;
  for (size_t t = 1; t < observed.size(); t++) chi2 += std::pow(observed[t] - expected[t], 2) / expected[t];
  return chi2;
}

}  // namespace

TEST_CASE("beyond_train: a conditional model trains, its class embedding learns, guided sampling runs") {
  set_num_threads(1);
  TrainConfig c = bars_config();
  c.conditional = true;
  Trainer trainer(c, bars());
  UNet& m = trainer.model();
  REQUIRE(m.config().num_classes == 10);
  REQUIRE(class_embedding(m) != nullptr);
  const Tensor emb_init = class_embedding(m)->var->value.clone();  // [11, temb], N(0, 1) at init
  std::vector<double> losses;
  for (int i = 0; i < 40; i++) losses.push_back(trainer.step());
  CHECK(head_tail_ratio(losses) < 0.8);  // as the unconditional smoke test

  // Every class's embedding row moved, the null class's too (p_uncond = 0.1 drops ~32 of the
  // 320 labels): rows only move when their class reaches the model. Adam at lr <= 3e-3 for
  // 40 steps moves a row's largest entry by 0.03 to 0.06 here; 0.01 is the bar.
  const Tensor& emb = class_embedding(m)->var->value;
  const int64_t width = emb.size(1);
  for (int64_t k = 0; k <= 10; k++) {
    double moved = 0;
    for (int64_t j = k * width; j < (k + 1) * width; j++) moved = std::max(moved, double(std::fabs(emb[j] - emb_init[j])));
    CAPTURE(k);
    CHECK(moved > 0.01);
  }
  // And it carries the class: on the same x_t and t, eps_theta given each image's own label
  // predicts the noise better than given the other orientation's label (k + 5 mod 10), and
  // better than given the null class. Here the right label's MSE is 10-20% below the wrong
  // one's at every t; the bar is 5%.
  const Dataset data = bars();
  const int64_t N = data.size();
  std::vector<int64_t> right(N), wrong(N), null(N, 10);
  for (int64_t i = 0; i < N; i++) right[i] = data.labels[i], wrong[i] = (data.labels[i] + 5) % 10;
  for (int64_t t : {10, 25, 50}) {
    const std::vector<int64_t> ts(N, t);
    const Tensor eps = testing::randn({N, 1, 8, 8}, 500 + t);
    const Tensor x_t = q_sample(trainer.schedule(), data.images, ts, eps);
    const double mse_right = eps_mse(m, x_t, ts, right, eps);
    CAPTURE(t);
    CHECK(mse_right < 0.95 * eps_mse(m, x_t, ts, wrong, eps));
    CHECK(mse_right < eps_mse(m, x_t, ts, null, eps));
  }

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

TEST_CASE("beyond_train: labels are dropped to the null class with probability p_uncond") {
  set_num_threads(1);
  // Batch 1 and every label 3: each step's one label reaches the model as 3, or as the null
  // class 10 when dropped, and the class embedding's gradient shows which. The zero-initialized
  // last layers pass no gradient back to the embedding before step 3: steps 1 and 2 are skipped.
  Dataset one_class = bars();
  std::fill(one_class.labels.begin(), one_class.labels.end(), 3);
  auto count_drops = [&](double p_uncond, int64_t steps) {
    TrainConfig c = bars_config();
    c.conditional = true;
    c.batch = 1;
    c.p_uncond = p_uncond;
    Trainer trainer(c, one_class);
    int64_t dropped = 0;
    for (int64_t step = 1; step <= steps; step++) {
      trainer.step();
      if (step < 3) continue;
      const std::vector<int64_t> seen = classes_with_gradient(trainer.model());
      CAPTURE(step);
      REQUIRE(seen.size() == 1);  // one label per step, kept or dropped
      REQUIRE((seen[0] == 3 || seen[0] == 10));
      dropped += seen[0] == 10;
    }
    return dropped;
  };
  CHECK(count_drops(0.0, 22) == 0);   // never dropped
  CHECK(count_drops(1.0, 22) == 20);  // always dropped
  // In between, the number dropped of n is Binomial(n, p_uncond): n = 300, p = 0.3 gives mean 90
  // and sd 7.9; |k - n p| <= 4.5 sd fails a correct trainer with probability 7e-6.
  const int64_t n = 300;
  const double p = 0.3;
  const int64_t k = count_drops(p, n + 2);
  CAPTURE(k);
  CHECK(std::fabs(k - n * p) <= 4.5 * std::sqrt(n * p * (1 - p)));
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

TEST_CASE("beyond_train: importance-sampled t are uniform until every t has 10 losses, then follow p_t") {
  set_num_threads(1);
  TrainConfig c = bars_config();
  c.T = 5;  // 50 losses fill the history: 7 steps of 8 at the least
  c.timesteps = TimestepSampling::importance;
  c.learned_variance = true;  // L_hybrid: its L_vlb part differs widely between t (L_0 is the decoder)
  Trainer trainer(c, bars());
  const TimestepSampler* sampler = trainer.timestep_sampler();
  REQUIRE(sampler != nullptr);
  CHECK(Trainer(bars_config(), bars()).timestep_sampler() == nullptr);  // uniform t: no sampler
  // Each step, the t drawn are read off the sampler's loss history (draws_between). Before
  // warm-up they must be uniform and p_t exactly 1/T; after it, they follow the p_t the sampler
  // gave before the step.
  std::vector<int64_t> warmup_draws(c.T + 1, 0), draws(c.T + 1, 0);
  std::vector<double> expected(c.T + 1, 0.0);
  int64_t warmup_steps = 0, steps_after = 0;
  double p_ratio = 0;
  const int64_t kStepsAfter = 80;
  while (steps_after < kStepsAfter) {
    REQUIRE(trainer.steps_done() < 200);
    const bool warm = sampler->warmed_up();
    const std::vector<double> p = sampler->probabilities();
    Tensor history0, count0, history1, count1;
    sampler->state(history0, count0);
    trainer.step();
    sampler->state(history1, count1);
    const std::vector<int64_t> d = draws_between(history0, count0, history1, count1);
    int64_t total = 0;
    for (int64_t t = 1; t <= c.T; t++) {
      REQUIRE(d[t] >= 0);
      total += d[t];
    }
    CAPTURE(trainer.steps_done());
    CHECK(total == c.batch);  // every sample's loss reaches the history
    if (!warm) {
      warmup_steps++;
      for (int64_t t = 1; t <= c.T; t++) {
        CHECK(p[t] == 1.0 / c.T);  // uniform until warmed up
        warmup_draws[t] += d[t];
      }
    } else {
      steps_after++;
      const double p_max = *std::max_element(p.begin() + 1, p.end()), p_min = *std::min_element(p.begin() + 1, p.end());
      p_ratio = std::max(p_ratio, p_max / p_min);
      for (int64_t t = 1; t <= c.T; t++) {
        draws[t] += d[t];
        expected[t] += c.batch * p[t];
      }
    }
  }
  // Warm-up needs 50 losses (7 steps at least); uniform draws fill every t within ~10 steps.
  CHECK(warmup_steps >= 7);
  CHECK(warmup_steps <= 20);
  // Then p_t is not uniform: the largest reaches 3.1 times the smallest here; the bar is 1.5 ...
  CAPTURE(p_ratio);
  CHECK(p_ratio > 1.5);
  // ... and the 640 t drawn follow it: Pearson's chi-square with 4 degrees of freedom is below
  // 18.5 (p = 0.001) against p_t (1.0 here), and above it against uniform (73 here). During warm-up, below
  // 18.5 against uniform.
  std::vector<double> uniform_after(c.T + 1, double(kStepsAfter) * c.batch / c.T),
      uniform_warmup(c.T + 1, double(warmup_steps) * c.batch / c.T);
  const double chi2_p = chi_square(draws, expected), chi2_uniform = chi_square(draws, uniform_after),
               chi2_warmup = chi_square(warmup_draws, uniform_warmup);
  CAPTURE(chi2_p);
  CAPTURE(chi2_uniform);
  CAPTURE(chi2_warmup);
  CHECK(chi2_p < 18.5);
  CHECK(chi2_uniform > 18.5);
  CHECK(chi2_warmup < 18.5);
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
  CHECK(trainer_weights(resumed) == trainer_weights(straight));
}
