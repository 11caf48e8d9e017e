// ddpm/train/config: the typed training config: every field round-trips through the
// checkpoint metadata, an unknown train.* key is refused, and --preset paper.
#include <string>

#include "ddpm/core/check.h"
#include "ddpm/train/config.h"
#include "tests/testing.h"

using namespace ddpm;

TEST_CASE("config: every field of the config table round-trips through the metadata") {
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
  c.ema_warmup = 3.5;
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
  c.lr_schedule = LrSchedule::linear;
  c.lr_floor = 0.25;
  c.ch = 16;
  c.res_blocks = 2;
  c.dropout = 0.05;
  c.image_size = 16;
  c.channels = 3;
  c.hflip = true;
  c.classes = 4;
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
  // The fields whose default changed are always written now; a checkpoint from before, which
  // omitted them at their old defaults, still means those (not today's defaults).
  for (const char* key : {"train.steps", "train.lr_schedule", "train.lr_floor", "train.ema_warmup"})
    CHECK_MESSAGE(m.count(key) == 1, key << " is not always written");
  auto old = m;
  for (const char* key : {"train.steps", "train.lr_schedule", "train.lr_floor", "train.ema_warmup"}) old.erase(key);
  const TrainConfig from_old = TrainConfig::from_metadata(old, "old.safetensors");
  CHECK(from_old.steps == 2000);
  CHECK(from_old.lr_schedule == LrSchedule::constant);
  CHECK(from_old.lr_floor == 0.0);
  CHECK(from_old.ema_warmup == 10.0);
  // An always-written field without an old default is still required.
  auto no_lr = m;
  no_lr.erase("train.lr");
  CHECK_THROWS_WITH_AS(TrainConfig::from_metadata(no_lr, "x.safetensors"), doctest::Contains("no 'train.lr'"), Error);
}

TEST_CASE("config: the default run is the study's recipe (docs/results.md)") {
  const TrainConfig d;
  CHECK(d.model == "tiny");
  CHECK(d.batch == 32);
  CHECK(d.lr == 2e-3);
  CHECK(d.warmup == 200);
  CHECK(d.lr_schedule == LrSchedule::cosine);
  CHECK(d.lr_floor == 0.1);
  CHECK(d.steps == 3400);
  CHECK(d.ema == 0.999);
  CHECK(d.ema_warmup == 10.0);
  CHECK(d.grad_clip == 1.0);
  CHECK(d.variance == VarianceType::fixed_large);
}

TEST_CASE("config: --preset paper is Ho et al.'s CIFAR-10 hyperparameters; flags given after it win") {
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
