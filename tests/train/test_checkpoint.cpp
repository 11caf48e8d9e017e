// ddpm/train/checkpoint: what validate_checkpoint refuses (another config, a file without
// the training state, config.* that disagrees with train.*), and load_model reading the EMA
// weights and the config back.
#include <map>
#include <string>

#include "ddpm/core/check.h"
#include "ddpm/io/safetensors.h"
#include "ddpm/train/checkpoint.h"
#include "ddpm/train/trainer.h"
#include "tests/bars.h"
#include "tests/temp_dir.h"
#include "tests/testing.h"

using namespace ddpm;

using testing::bars;
using testing::bars_config;

TEST_CASE("checkpoint: a checkpoint from another config is refused with a message naming the difference") {
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

TEST_CASE("checkpoint: load_model reads the EMA weights and the config back") {
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

TEST_CASE("checkpoint: a checkpoint whose config.* disagrees with train.ch, image_size, channels or classes is refused as corrupt") {
  TrainConfig c = bars_config();
  c.ch = 16;
  c.res_blocks = 2;
  c.dropout = 0.25;
  Trainer t(c, bars());
  testing::TempDir dir;
  t.save_checkpoint(dir / "a.safetensors");
  SafeTensors st = load_safetensors(dir / "a.safetensors");
  st.metadata["train.ch"] = "24";
  CHECK_THROWS_WITH_AS(validate_checkpoint(st), doctest::Contains("do not fit train.ch = 24"), Error);
  st.metadata["train.ch"] = "16";
  st.metadata["train.image_size"] = "16";  // the model is bars' 8x8
  CHECK_THROWS_WITH_AS(validate_checkpoint(st), doctest::Contains("do not fit train.image_size = 16"), Error);
  st.metadata.erase("train.image_size");
  st.metadata["train.channels"] = "3";  // the model is gray
  CHECK_THROWS_WITH_AS(validate_checkpoint(st), doctest::Contains("and train.channels = 3"), Error);
  st.metadata.erase("train.channels");
  st.metadata["train.conditional"] = "1";  // the model is unconditional
  st.metadata["train.classes"] = "3";
  CHECK_THROWS_WITH_AS(validate_checkpoint(st), doctest::Contains("config.num_classes = 0"), Error);
  CHECK_THROWS_WITH_AS(validate_checkpoint(st), doctest::Contains("train.classes = 3"), Error);
}
