// The training loop end to end on a minimal U-Net and synthetic 8x8 "digits": the loss
// falls, runs repeat bit for bit at any thread count, and a resumed run equals an
// uninterrupted one.
#include <cmath>
#include <functional>

#include "ddpm/core/check.h"
#include "ddpm/io/safetensors.h"
#include "ddpm/core/parallel.h"
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

TEST_CASE("train: every field of the config table round-trips through the metadata") {
  // A config with every field away from its default: the check below fails for a field
  // added to the table but not here, so the round trip covers the whole table.
  TrainConfig c;
  c.model = "minimal";
  c.batch = 8;
  c.micro_batch = 2;
  c.lr = 3e-3;
  c.warmup = 5;
  c.grad_clip = 0.5;
  c.ema = 0.99;
  c.schedule = "cosine";
  c.T = 50;
  c.seed = 18446744073709551615ull;
  c.loss = LossType::simple;  // weighted does not combine with x0 and learned variance
  c.variance = VarianceType::fixed_small;
  c.conditional = true;
  c.p_uncond = 0.2;
  c.predict = PredictionTarget::x0;
  c.learned_variance = true;
  c.timesteps = TimestepSampling::importance;
  c.steps = 1234;
  c.minutes = 17.5;
  c.lr_schedule = LrSchedule::cosine;
  c.lr_floor = 0.1;
  c.ch = 16;
  c.res_blocks = 2;
  c.dropout = 0.05;
  TrainConfig weighted;
  weighted.loss = LossType::weighted;
  const TrainConfig defaults;
  const TrainConfig back = TrainConfig::from_metadata(c.to_metadata(), "c");
  const TrainConfig weighted_back = TrainConfig::from_metadata(weighted.to_metadata(), "w");
  const TrainConfig defaults_back = TrainConfig::from_metadata(defaults.to_metadata(), "d");
#define CHECK_FIELD(T_, name, default_value, flag, bounds, rule, help)                                         \
  CHECK_MESSAGE((c.name != defaults.name || (std::string(#name) == "loss" && weighted.name != defaults.name)), \
                #name " is not set away from its default here");                                              \
  CHECK_MESSAGE(back.name == c.name, #name " did not round-trip");                                              \
  CHECK_MESSAGE(weighted_back.name == weighted.name, #name " did not round-trip");                              \
  CHECK_MESSAGE(defaults_back.name == defaults.name, #name " did not round-trip");
  DDPM_TRAIN_CONFIG_FIELDS(CHECK_FIELD)
#undef CHECK_FIELD
  // A default config writes the options beyond Algorithm 2 not at all (checkpoints unchanged).
  const auto m = defaults.to_metadata();
  CHECK(m.count("train.predict") == 0);
  CHECK(m.count("train.learned_variance") == 0);
  CHECK(m.count("train.timesteps") == 0);
  CHECK(m.count("train.micro_batch") == 0);
  CHECK(m.at("train.loss") == "simple");
  CHECK(m.at("train.variance") == "fixed_large");
  CHECK(c.to_metadata().at("train.predict") == "x0");
  CHECK(c.to_metadata().at("train.timesteps") == "importance");
  // A train.* key the table does not know is refused by name.
  auto extra = m;
  extra["train.momentum"] = "0.9";
  CHECK_THROWS_WITH_AS(TrainConfig::from_metadata(extra, "x.safetensors"),
                       doctest::Contains("x.safetensors: metadata has 'train.momentum'"), Error);
}

TEST_CASE("train: the config is validated before the schedule or the model is allocated") {
  TrainConfig c = bars_config();
  c.T = 100000000000;  // the schedule's arrays alone would be 5 TB: std::bad_alloc if built first
  CHECK_THROWS_WITH_AS(Trainer(c, bars()), doctest::Contains("--T 100000000000 not in [1, 100000]"), Error);
  c = bars_config();
  c.batch = 0;
  CHECK_THROWS_WITH_AS(Trainer(c, bars()), doctest::Contains("--batch 0 not in [1, 65536]"), Error);
  // T's bound is the schedule's kMaxT, the one every tool applies.
  c = bars_config();
  c.T = kMaxT;
  CHECK_NOTHROW(c.validate());
  c.T = kMaxT + 1;
  CHECK_THROWS_WITH_AS(c.validate(), doctest::Contains("--T 100001 not in [1, 100000]"), Error);
}

TEST_CASE("train: every option resumes through resume_trainer, ./train_mnist's path, bit for bit") {
  struct Case {
    const char* name;
    std::function<void(TrainConfig&)> set;
  };
  for (const Case& k : std::vector<Case>{
           {"--predict x0", [](TrainConfig& c) { c.predict = PredictionTarget::x0; }},
           {"--predict v", [](TrainConfig& c) { c.predict = PredictionTarget::v; }},
           {"--learned-variance", [](TrainConfig& c) { c.learned_variance = true; }},
           {"--timesteps importance", [](TrainConfig& c) { c.timesteps = TimestepSampling::importance, c.T = 5; }},
           {"--conditional", [](TrainConfig& c) { c.conditional = true; }},
           {"--loss weighted", [](TrainConfig& c) { c.loss = LossType::weighted; }},
           {"--variance fixed_small --schedule cosine", [](TrainConfig& c) {
              c.variance = VarianceType::fixed_small, c.schedule = "cosine";
            }},
           {"--lr-schedule cosine --lr-floor 0.1 --steps 14", [](TrainConfig& c) {
              c.lr_schedule = LrSchedule::cosine, c.lr_floor = 0.1, c.steps = 14, c.warmup = 3;
            }},
           {"--lr-schedule linear --steps 14", [](TrainConfig& c) { c.lr_schedule = LrSchedule::linear, c.steps = 14; }},
           {"--ch 16 --res-blocks 2 --dropout 0.2", [](TrainConfig& c) { c.ch = 16, c.res_blocks = 2, c.dropout = 0.2; }}}) {
    CAPTURE(k.name);
    testing::TempDir dir;
    TrainConfig c = bars_config();
    k.set(c);
    Trainer straight(c, bars());
    for (int i = 0; i < 14; i++) straight.step();
    {
      Trainer first(c, bars());
      for (int i = 0; i < 9; i++) first.step();
      first.save_checkpoint(dir / "ckpt.safetensors");
    }
    Resumed r = resume_trainer({dir / "ckpt.safetensors"}, bars());
    REQUIRE(r.trainer);
    CHECK(r.path == dir / "ckpt.safetensors");
    CHECK(r.trainer->config().to_metadata() == c.to_metadata());
    CHECK(r.trainer->steps_done() == 9);
    for (int i = 0; i < 5; i++) r.trainer->step();
    CHECK(weights(*r.trainer) == weights(straight));
  }
}

TEST_CASE("train: --ch, --res-blocks and --dropout size the model, and a decaying schedule lands at --steps") {
  TrainConfig c = bars_config();
  c.ch = 16;
  c.res_blocks = 2;
  c.dropout = 0.25;
  Trainer t(c, bars());
  CHECK(t.model().config().ch == 16);
  CHECK(t.model().config().num_res_blocks == 2);
  CHECK(t.model().config().dropout == 0.25f);
  TrainConfig own = bars_config();  // 0 and -1: the model's own
  CHECK(Trainer(own, bars()).model().config().ch == unet_config(own.model).ch);
  // A checkpoint whose config.* disagrees with train.ch is refused as corrupt.
  testing::TempDir dir;
  t.save_checkpoint(dir / "a.safetensors");
  SafeTensors st = load_safetensors(dir / "a.safetensors");
  st.metadata["train.ch"] = "24";
  CHECK_THROWS_WITH_AS(validate_checkpoint(st), doctest::Contains("do not fit train.ch = 24"), Error);
  // The learning rate the optimizer sees: warm-up, then cosine down to floor x lr at --steps.
  TrainConfig cos = bars_config();
  cos.warmup = 2;
  cos.steps = 6;
  cos.lr_schedule = LrSchedule::cosine;
  cos.lr_floor = 0.1;
  const double lr = cos.lr;
  CHECK(scheduled_lr(lr, 1, 2, cos.lr_schedule, 0.1, 6) == lr * 0.5);  // warm-up
  CHECK(scheduled_lr(lr, 2, 2, cos.lr_schedule, 0.1, 6) == lr);
  CHECK(scheduled_lr(lr, 4, 2, cos.lr_schedule, 0.1, 6) == doctest::Approx(lr * (0.1 + 0.9 * 0.5)).epsilon(1e-15));
  CHECK(scheduled_lr(lr, 6, 2, cos.lr_schedule, 0.1, 6) == doctest::Approx(lr * 0.1).epsilon(1e-15));
  CHECK(scheduled_lr(lr, 9, 2, cos.lr_schedule, 0.1, 6) == doctest::Approx(lr * 0.1).epsilon(1e-15));  // past the end
  CHECK(scheduled_lr(lr, 5, 2, LrSchedule::linear, 0.0, 6) == doctest::Approx(lr * 0.25).epsilon(1e-15));
  CHECK(scheduled_lr(lr, 5, 2, LrSchedule::constant, 0.1, 6) == lr);
  CHECK(scheduled_lr(lr, 5, 2, LrSchedule::cosine, 0.1, 0) == lr);  // target not chosen yet (--minutes)
  CHECK_THROWS_WITH_AS(parse_lr_schedule("step"), doctest::Contains("use constant, cosine or linear"), Error);
}

TEST_CASE("train: --preset paper is Ho et al.'s CIFAR-10 hyperparameters; flags given after it win") {
  const TrainConfig p = preset_config("paper");
  CHECK(p.lr == 2e-4);
  CHECK(p.batch == 128);
  CHECK(p.ema == 0.9999);
  CHECK(p.dropout == 0.1);
  CHECK(p.warmup == 5000);
  CHECK(p.grad_clip == 1.0);
  CHECK(p.lr_schedule == LrSchedule::constant);
  CHECK(preset_config("default").to_metadata() == TrainConfig().to_metadata());
  CHECK_THROWS_WITH_AS(preset_config("fast"), doctest::Contains("unknown --preset 'fast'"), Error);
  // It round-trips and resumes like any config.
  CHECK(TrainConfig::from_metadata(p.to_metadata(), "p").to_metadata() == p.to_metadata());
}

TEST_CASE("train: a resume's --steps and --minutes replace where the run ends, and a resume at the same end is exact") {
  testing::TempDir dir;
  TrainConfig c = bars_config();
  c.lr_schedule = LrSchedule::cosine;
  c.steps = 10;
  c.warmup = 2;
  Trainer straight(c, bars());
  for (int i = 0; i < 10; i++) straight.step();
  {
    Trainer first(c, bars());
    for (int i = 0; i < 4; i++) first.step();
    first.save_checkpoint(dir / "a.safetensors");
  }
  Resumed same = resume_trainer({dir / "a.safetensors"}, bars());
  CHECK(same.trainer->config().steps == 10);
  for (int i = 0; i < 6; i++) same.trainer->step();
  CHECK(weights(*same.trainer) == weights(straight));
  ResumeOverrides longer;
  longer.has_steps = true;
  longer.steps = 20;
  Resumed r = resume_trainer({dir / "a.safetensors"}, bars(), longer);
  CHECK(r.trainer->config().steps == 20);
  for (int i = 0; i < 6; i++) r.trainer->step();
  CHECK_FALSE(weights(*r.trainer) == weights(straight));  // the cosine now ends at 20
  ResumeOverrides minutes;
  minutes.has_minutes = true;
  minutes.minutes = 3;
  Resumed m = resume_trainer({dir / "a.safetensors"}, bars(), minutes);
  CHECK(m.trainer->config().minutes == 3);
  CHECK(m.trainer->config().steps == 0);  // chosen again from the measured speed
}

TEST_CASE("train: a resume's --lr replaces the learning rate, recorded in the metadata, and resumes exactly") {
  testing::TempDir dir;
  // The reference: 6 steps at 3e-3, then 1e-3 from step 6 on, 4 more steps.
  Trainer straight(bars_config(), bars());
  for (int i = 0; i < 6; i++) straight.step();
  straight.set_lr(1e-3);
  for (int i = 0; i < 4; i++) straight.step();
  {
    Trainer first(bars_config(), bars());
    for (int i = 0; i < 6; i++) first.step();
    first.save_checkpoint(dir / "a.safetensors");
  }
  ResumeOverrides lower;
  lower.has_lr = true;
  lower.lr = 1e-3;
  Resumed r = resume_trainer({dir / "a.safetensors"}, bars(), lower);
  CHECK(r.trainer->config().lr == 1e-3);
  for (int i = 0; i < 2; i++) r.trainer->step();
  r.trainer->save_checkpoint(dir / "b.safetensors");
  const auto meta = load_safetensors(dir / "b.safetensors").metadata;
  CHECK(meta.at("train.lr") == "0.001");
  CHECK(meta.at("state.lr_history") == "0:0.0030000000000000001,6:0.001");
  // A later resume, without --lr, keeps the new rate and the history.
  Resumed again = resume_trainer({dir / "b.safetensors"}, bars());
  CHECK(again.trainer->lr_history() == straight.lr_history());
  for (int i = 0; i < 2; i++) again.trainer->step();
  CHECK(weights(*again.trainer) == weights(straight));
  // An --lr out of bounds is refused as the flag is.
  lower.lr = -1;
  CHECK_THROWS_WITH_AS(resume_trainer({dir / "a.safetensors"}, bars(), lower), doctest::Contains("--lr -1"), Error);
}
