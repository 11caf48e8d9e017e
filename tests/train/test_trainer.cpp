// ddpm/train/trainer: the training loop end to end on a minimal U-Net and synthetic 8x8
// bars: the loss falls, runs repeat bit for bit at any thread count, a NaN stops the step
// with a report, and a resumed run (save_checkpoint / load_checkpoint, resume_trainer)
// equals an uninterrupted one.
#include <cmath>
#include <functional>

#include "ddpm/core/check.h"
#include "ddpm/core/parallel.h"
#include "ddpm/io/safetensors.h"
#include "ddpm/train/trainer.h"
#include "tests/bars.h"
#include "tests/temp_dir.h"
#include "tests/testing.h"

using namespace ddpm;

using testing::bars;
using testing::bars_config;
using testing::trainer_weights;

TEST_CASE("trainer: a seeded smoke run's loss falls and repeats bit for bit at 1 and 2 threads") {
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
      first_weights = trainer_weights(trainer);
      first_losses = losses;
    } else {
      CHECK(losses == first_losses);
      CHECK(trainer_weights(trainer) == first_weights);
    }
  }
  set_num_threads(1);
}

TEST_CASE("trainer: N steps, checkpoint, resume, M steps equals N + M steps, bit for bit") {
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
  CHECK(trainer_weights(resumed) == trainer_weights(straight));
  CHECK(resumed.epoch_progress() == straight.epoch_progress());
}

TEST_CASE("trainer: a NaN in the data stops the step with a report naming the step, t and the first bad op") {
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

TEST_CASE("trainer: the config is validated before the schedule or the model is allocated") {
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

TEST_CASE("trainer: --ch, --res-blocks and --dropout size the model") {
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
}

TEST_CASE("trainer: --hflip mirrors training images, and nothing else") {
  TrainConfig plain = bars_config(), flipped = bars_config();
  flipped.hflip = true;
  // Column bars change under a mirror: the runs differ.
  Trainer a(plain, bars()), b(flipped, bars());
  for (int i = 0; i < 3; i++) a.step(), b.step();
  CHECK(trainer_weights(a) != trainer_weights(b));
  // Row bars (labels 0..4) are their own mirror images: the flips change nothing.
  Dataset rows = bars();
  for (int64_t n = 0; n < rows.size(); n++)
    if (rows.labels[n] >= 5) {
      for (int64_t k = 0; k < 64; k++) rows.images[n * 64 + k] = rows.images[(n - 5) * 64 + k];
      rows.labels[n] = static_cast<uint8_t>(rows.labels[n] - 5);
    }
  Trainer c(plain, rows), d(flipped, rows);
  for (int i = 0; i < 3; i++) c.step(), d.step();
  CHECK(trainer_weights(c) == trainer_weights(d));
}

TEST_CASE("trainer: every option resumes through resume_trainer, ./train_mnist's path, bit for bit") {
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
           {"--ch 16 --res-blocks 2 --dropout 0.2", [](TrainConfig& c) { c.ch = 16, c.res_blocks = 2, c.dropout = 0.2; }},
           {"--hflip", [](TrainConfig& c) { c.hflip = true; }},
           {"--ema-warmup 2", [](TrainConfig& c) { c.ema_warmup = 2; }},
           {"the default recipe (batch, lr schedule, EMA), ending at step 14", [](TrainConfig& c) {
              const TrainConfig d;
              c.batch = d.batch, c.lr = d.lr, c.warmup = 3, c.lr_schedule = d.lr_schedule, c.lr_floor = d.lr_floor;
              c.ema = d.ema, c.ema_warmup = d.ema_warmup, c.grad_clip = d.grad_clip, c.steps = 14;
            }},
           {"--preset paper", [](TrainConfig& c) {
              TrainConfig p = preset_config("paper");
              p.model = c.model, p.T = c.T, p.seed = c.seed;
              c = p;
            }}}) {
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
    CHECK(trainer_weights(*r.trainer) == trainer_weights(straight));
  }
}

TEST_CASE("trainer: a resume's --steps and --minutes replace where the run ends, and a resume at the same end is exact") {
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
  CHECK(trainer_weights(*same.trainer) == trainer_weights(straight));
  ResumeOverrides longer;
  longer.has_steps = true;
  longer.steps = 20;
  Resumed r = resume_trainer({dir / "a.safetensors"}, bars(), longer);
  CHECK(r.trainer->config().steps == 20);
  for (int i = 0; i < 6; i++) r.trainer->step();
  CHECK_FALSE(trainer_weights(*r.trainer) == trainer_weights(straight));  // the cosine now ends at 20
  ResumeOverrides minutes;
  minutes.has_minutes = true;
  minutes.minutes = 3;
  Resumed m = resume_trainer({dir / "a.safetensors"}, bars(), minutes);
  CHECK(m.trainer->config().minutes == 3);
  CHECK(m.trainer->config().steps == 0);  // chosen again from the measured speed
}

TEST_CASE("trainer: a resume's --lr replaces the learning rate, recorded in the metadata, and resumes exactly") {
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
  CHECK(trainer_weights(*again.trainer) == trainer_weights(straight));
  // An --lr out of bounds is refused as the flag is.
  lower.lr = -1;
  CHECK_THROWS_WITH_AS(resume_trainer({dir / "a.safetensors"}, bars(), lower), doctest::Contains("--lr -1"), Error);
}
