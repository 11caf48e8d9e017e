// Reliability: hostile checkpoints and configs are refused before anything is allocated,
// with errors naming the file and the field; a refused checkpoint leaves the trainer as
// it was; an injected NaN gives the full report and training resumes from the last good
// checkpoint bit for bit; every input the fuzzers ever crashed on (tests/fuzz/regressions)
// now gives a clean ddpm::Error.
#include <algorithm>
#include <cmath>
#include <filesystem>
#include <string>

#include "ddpm/core/check.h"
#include "ddpm/app/flags.h"
#include "ddpm/data/mnist.h"
#include "ddpm/io/safetensors.h"
#include "ddpm/train/trainer.h"
#include "ddpm/model/unet.h"
#include "tests/temp_dir.h"
#include "tests/testing.h"

using namespace ddpm;
using testing::error_of;

namespace {

TrainConfig minimal_config() {
  TrainConfig c;
  c.model = "minimal";
  c.batch = 4;
  c.lr = 2e-3;
  c.warmup = 2;
  c.T = 20;
  c.seed = 11;
  return c;
}

// 12 images of 8x8: a diagonal pixel at a position given by the label.
Dataset dots() {
  Dataset d{Tensor::full({12, 1, 8, 8}, -1.0f), {}};
  for (int64_t n = 0; n < 12; n++) {
    d.images[n * 64 + (n % 8) * 9] = 1.0f;
    d.labels.push_back(static_cast<uint8_t>(n % 10));
  }
  return d;
}

std::vector<float> state(Trainer& t) {  // weights, EMA, Adam moments
  std::vector<float> w;
  auto add = [&](const Tensor& x) {
    auto v = x.to_vector();
    w.insert(w.end(), v.begin(), v.end());
  };
  for (Parameter* p : t.model().parameters()) add(p->var->value);
  for (const Tensor& s : t.ema().shadow()) add(s);
  return w;
}

bool has(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

// The metadata of a valid minimal checkpoint, to corrupt one field at a time.
std::map<std::string, std::string> checkpoint_metadata(const std::string& path) {
  Trainer t(minimal_config(), dots());
  t.save_checkpoint(path);
  return load_safetensors(path).metadata;
}

}  // namespace

TEST_CASE("reliability: a hostile model config is refused by name before the U-Net is allocated") {
  std::map<std::string, std::string> m = unet_config("minimal").to_metadata();
  struct Case {
    const char* key;
    const char* value;
  };
  // Each would ask for terabytes, overflow a size product, or make no sense.
  for (Case c : {Case{"config.ch", "1000000000000"}, Case{"config.ch", "-8"}, Case{"config.ch_mult", "1,2,99999"},
                 Case{"config.image_size", "0"}, Case{"config.num_res_blocks", "100000"},
                 Case{"config.groups", "0"}, Case{"config.num_classes", "9999999999"}, Case{"config.in_ch", "1x"},
                 Case{"config.dropout", "nan"}, Case{"config.dropout", "0.1junk"}, Case{"config.ch", " 8"},
                 Case{"config.ch", "99999999999999999999999"}, Case{"config.ch_mult", "1,,2"}}) {
    auto bad = m;
    bad[c.key] = c.value;
    const std::string msg = error_of([&] { UNetConfig::from_metadata(bad, "x.safetensors"); });
    CAPTURE(c.key);
    CAPTURE(c.value);
    CAPTURE(msg);
    CHECK(has(msg, "x.safetensors"));
    CHECK_FALSE(msg.empty());
  }
  // A config that passes each bound alone but would still be huge: 4096 wide, 8 levels.
  auto wide = m;
  wide["config.ch"] = "4096";
  wide["config.groups"] = "1";
  wide["config.ch_mult"] = "1,1,1";
  wide["config.image_size"] = "8";
  CHECK(has(error_of([&] { UNetConfig::from_metadata(wide, "w.safetensors"); }), "parameters, more than"));
  // Every key missing in turn is named.
  for (const auto& kv : m) {
    auto missing = m;
    missing.erase(kv.first);
    CHECK(has(error_of([&] { UNetConfig::from_metadata(missing, "m.safetensors"); }), kv.first));
  }
}

TEST_CASE("reliability: a hostile training config is refused naming the file and the key") {
  testing::TempDir dir;
  const auto m = checkpoint_metadata(dir / "a.safetensors");
  CHECK_NOTHROW(TrainConfig::from_metadata(m, "a.safetensors"));
  for (auto kv : std::vector<std::pair<std::string, std::string>>{{"train.batch", "1000000000"},
                                                                  {"train.batch", "0"},
                                                                  {"train.T", "100000000000"},
                                                                  {"train.lr", "inf"},
                                                                  {"train.lr", "-1"},
                                                                  {"train.ema", "1.5"},
                                                                  {"train.schedule", "exponential"},
                                                                  {"train.loss", "l1"},
                                                                  {"train.seed", "-1"},
                                                                  {"train.warmup", "+5"}}) {
    auto bad = m;
    bad[kv.first] = kv.second;
    const std::string msg = error_of([&] { TrainConfig::from_metadata(bad, "a.safetensors"); });
    CAPTURE(kv.first);
    CAPTURE(msg);
    CHECK(has(msg, "a.safetensors"));
    CHECK_FALSE(msg.empty());
  }
  // The full 64-bit seed range survives the round trip.
  TrainConfig big = minimal_config();
  big.seed = 18446744073709551615ull;
  CHECK(TrainConfig::from_metadata(big.to_metadata(), "big.safetensors").seed == big.seed);
}

TEST_CASE("reliability: an incompatible checkpoint names the parameter that differs and changes nothing") {
  testing::TempDir dir;
  Trainer a(minimal_config(), dots());
  for (int i = 0; i < 2; i++) a.step();
  a.save_checkpoint(dir / "a.safetensors");

  // Another model width: the first differing config key is named.
  SafeTensors st = load_safetensors(dir / "a.safetensors");
  Trainer b(minimal_config(), dots());
  const std::vector<float> before = state(b);
  SafeTensors wide = st;
  wide.metadata["config.ch"] = "16";
  std::string msg = error_of([&] { b.load_checkpoint(wide); });
  CHECK(has(msg, "config.ch = 16"));
  CHECK(has(msg, "this run has 8"));
  CHECK(has(msg, dir / "a.safetensors"));

  // A file whose counters are corrupt is refused after the tensors matched: the trainer
  // must still be untouched (nothing copied before everything is checked).
  for (const char* key : {"state.position", "state.step", "state.adam_steps"}) {
    SafeTensors bad = st;
    bad.metadata[key] = key == std::string("state.position") ? "12" : "-1";
    msg = error_of([&] { b.load_checkpoint(bad); });
    CAPTURE(msg);
    CHECK(has(msg, "inconsistent training state"));
  }
  SafeTensors missing = st;
  missing.tensors.pop_back();
  CHECK(has(error_of([&] { b.load_checkpoint(missing); }), "has no tensor adam.v."));
  CHECK(state(b) == before);
  CHECK(b.steps_done() == 0);
  // And the intact file loads.
  b.load_checkpoint(st);
  CHECK(state(b) == state(a));
}

TEST_CASE("reliability: an injected NaN reports the step, the sample's t and the first bad op; resume is exact") {
  testing::TempDir dir;
  Trainer straight(minimal_config(), dots());
  for (int i = 0; i < 6; i++) straight.step();

  Trainer t(minimal_config(), dots());
  t.inject_nan(4, /*sample=*/2);
  t.step();
  t.step();
  t.save_checkpoint(dir / "good.safetensors");  // the last good checkpoint, at step 2
  t.step();
  std::string report;
  try {
    t.step();
    FAIL("no error");
  } catch (const NonFiniteError& e) {
    report = e.what();
  }
  CAPTURE(report);
  // The t of sample 2 of step 4, drawn as training_step draws it (seed, step index 3).
  Schedule s = make_schedule("linear", 20);
  Tape tape;
  TapeEpsFn zero = [](Tape&, const Var& x_t, const std::vector<int64_t>&) { return constant(Tensor(x_t->value.shape())); };
  TrainStep ts = training_step(tape, s, zero, Tensor({4, 1, 8, 8}), 11, 3);
  CHECK(has(report, "step 4: the loss is nan"));
  CHECK(has(report, "t = [" + std::to_string(ts.t[2]) + "]."));  // only the poisoned sample
  CHECK(has(report, "First non-finite value: op #"));
  CHECK(has(report, "(conv2d)"));  // the first op that reads x_t is the input convolution
  CHECK(t.steps_done() == 3);     // the failed step changed nothing...
  CHECK_THROWS_AS(t.step(), NonFiniteError);  // ...so it fails the same way again

  // The last good checkpoint resumes into the uninterrupted run, bit for bit.
  Trainer resumed(minimal_config(), dots());
  resumed.load_checkpoint(dir / "good.safetensors");
  for (int i = 0; i < 4; i++) resumed.step();
  CHECK(state(resumed) == state(straight));
}

TEST_CASE("reliability: a non-finite gradient is located in backward order") {
  Tape tape;
  Var x = variable(Tensor::full({3}, 1.0f));
  Var a = tape.record("first", x->value.clone(), {x}, [x](Node& out) {
    for (int64_t i = 0; i < 3; i++) x->grad_ref()[i] += out.grad[i];
  });
  Var b = tape.record("poison", a->value.clone(), {a}, [a](Node& out) {
    for (int64_t i = 0; i < 3; i++) a->grad_ref()[i] += i == 1 ? NAN : out.grad[i];
  });
  Var loss = tape.record("sum", Tensor::full({1}, 3.0f), {b}, [b](Node& out) {
    for (int64_t i = 0; i < 3; i++) b->grad_ref()[i] += out.grad[0];
  });
  CHECK(tape.first_nonfinite() == "");
  tape.backward(loss);
  // op #0's output gradient is the first bad one met walking backward: op #1 made it.
  CHECK(tape.first_nonfinite_grad() == "op #0 (first) output [3]");
}

TEST_CASE("reliability: every input the fuzzers crashed on now gives a clean ddpm::Error") {
  // tests/fuzz/regressions/<harness>/<input>: each is fed to the reader its harness
  // drives; the reader must throw ddpm::Error (anything else fails the test).
  const std::string root = "tests/fuzz/regressions";
  REQUIRE_MESSAGE(std::filesystem::is_directory(root), "run the suite from the repository root");
  int inputs = 0;
  for (const auto& harness : std::filesystem::directory_iterator(root)) {
    if (!harness.is_directory()) continue;  // README
    const std::string name = harness.path().filename().string();
    for (const auto& file : std::filesystem::directory_iterator(harness.path())) {
      const std::vector<uint8_t> bytes = testing::read_bytes(file.path().string());
      const std::string source = file.path().string();
      CAPTURE(source);
      inputs++;
      if (name == "idx") {
        CHECK_THROWS_AS(parse_idx_images(bytes.data(), bytes.size(), source), Error);
        CHECK_THROWS_AS(parse_idx_labels(bytes.data(), bytes.size(), source), Error);
      } else if (name == "safetensors") {
        // The whole checkpoint path: parse, both configs, the trainer's load.
        CHECK_THROWS_AS(
            {
              SafeTensors st = parse_safetensors(bytes.data(), bytes.size(), source);
              UNetConfig::from_metadata(st.metadata, source);
              TrainConfig::from_metadata(st.metadata, source);
              Trainer trainer(minimal_config(), dots());
              trainer.load_checkpoint(st);
            },
            Error);
      } else if (name == "flags") {
        std::vector<std::string> args(1);
        for (uint8_t c : bytes) {
          if (c == 0) args.emplace_back();
          else args.back() += static_cast<char>(c);
        }
        int64_t steps = 0;
        double lr = 0;
        std::string out;
        bool flag = false;
        Flags flags("test", "regression");
        flags.add("--steps", &steps, "");
        flags.add("--lr", &lr, "");
        flags.add("--out", &out, "");
        flags.add("--conditional", &flag, "");
        CHECK_THROWS_AS(flags.parse(args), Error);
      } else {
        FAIL("unknown harness folder " << name);
      }
    }
  }
  CHECK(inputs >= 1);  // the folder cannot silently go missing
}

TEST_CASE("reliability: the trainer and ckpt_hash's validate_checkpoint refuse the same files with the same message") {
  testing::TempDir dir;
  Trainer a(minimal_config(), dots());
  for (int i = 0; i < 2; i++) a.step();
  a.save_checkpoint(dir / "a.safetensors");
  const SafeTensors st = load_safetensors(dir / "a.safetensors");
  const std::string first = st.tensors.front().first;  // a weight tensor
  struct Case {
    const char* what;
    std::function<void(SafeTensors&)> corrupt;
    const char* message;
  };
  auto set_value = [](SafeTensors& s, const std::string& name, float v) {
    for (auto& nt : s.tensors)
      if (nt.first == name) {
        nt.second = nt.second.clone();
        nt.second[0] = v;
      }
  };
  std::vector<Case> cases{
      {"format_version 99", [](SafeTensors& s) { s.metadata["format_version"] = "99"; }, "checkpoint format version 99"},
      {"step -1", [](SafeTensors& s) { s.metadata["state.step"] = "-1"; }, "inconsistent training state"},
      {"adam_steps > step", [](SafeTensors& s) { s.metadata["state.adam_steps"] = "3"; }, "inconsistent training state"},
      {"ema_updates > step", [](SafeTensors& s) { s.metadata["state.ema_updates"] = "3"; }, "inconsistent training state"},
      {"unknown state key", [](SafeTensors& s) { s.metadata["state.momentum"] = "1"; }, "'state.momentum'"},
      {"bad lr_history", [](SafeTensors& s) { s.metadata["state.lr_history"] = "0:0.002,5:0.001"; }, "state.lr_history"},
      {"extra tensor", [](SafeTensors& s) { s.tensors.emplace_back("attn.q", Tensor({2})); },
       "has attn.q [2], which the model does not expect"},
      {"NaN weight", [&](SafeTensors& s) { set_value(s, first, NAN); }, "has a non-finite value"},
      {"Inf EMA", [&](SafeTensors& s) { set_value(s, "ema." + first, INFINITY); }, "has a non-finite value"},
      {"NaN adam.m", [&](SafeTensors& s) { set_value(s, "adam.m." + first, NAN); }, "has a non-finite value"},
      {"negative adam.v", [&](SafeTensors& s) { set_value(s, "adam.v." + first, -1.0f); },
       "has a negative second moment"},
  };
  for (const char* key : {"state.step", "state.epoch", "state.position", "state.adam_steps", "state.ema_updates",
                          "state.data_size", "format_version", "train.lr", "config.ch"})
    cases.push_back({key, [key](SafeTensors& s) { s.metadata.erase(key); }, key});
  Trainer b(minimal_config(), dots());
  const std::vector<float> before = state(b);
  for (const Case& c : cases) {
    CAPTURE(c.what);
    SafeTensors bad = st;
    c.corrupt(bad);
    const std::string by_trainer = error_of([&] { b.load_checkpoint(bad); });
    const std::string by_hash = error_of([&] { validate_checkpoint(bad); });
    CAPTURE(by_trainer);
    CHECK(has(by_trainer, c.message));
    CHECK(has(by_trainer, dir / "a.safetensors"));
    CHECK(by_hash == by_trainer);
  }
  // The bad tensor is named.
  SafeTensors nan = st;
  set_value(nan, "adam.v." + first, NAN);
  CHECK(has(error_of([&] { validate_checkpoint(nan); }), "tensor adam.v." + first + " has a non-finite value"));
  CHECK(state(b) == before);
  CHECK(b.steps_done() == 0);

  // An importance-sampling checkpoint (with timesteps.history and .count) is accepted by both.
  TrainConfig ic = minimal_config();
  ic.timesteps = TimestepSampling::importance;
  Trainer imp(ic, dots());
  imp.step();
  imp.save_checkpoint(dir / "imp.safetensors");
  const SafeTensors ist = load_safetensors(dir / "imp.safetensors");
  CHECK(validate_checkpoint(ist).train.timesteps == TimestepSampling::importance);
  Trainer imp2(ic, dots());
  CHECK_NOTHROW(imp2.load_checkpoint(ist));
  SafeTensors no_history = ist;
  no_history.tensors.erase(std::remove_if(no_history.tensors.begin(), no_history.tensors.end(),
                                          [](const std::pair<std::string, Tensor>& nt) { return nt.first == "timesteps.count"; }),
                           no_history.tensors.end());
  CHECK(has(error_of([&] { validate_checkpoint(no_history); }), "has no tensor timesteps.count"));
}

TEST_CASE("reliability: load_model (./sample, ./eval) refuses non-finite and extra tensors, naming the file and tensor") {
  testing::TempDir dir;
  Trainer a(minimal_config(), dots());
  a.step();
  a.save_checkpoint(dir / "a.safetensors");
  const SafeTensors checkpoint = load_safetensors(dir / "a.safetensors");
  const std::string first = checkpoint.tensors.front().first;  // a weight tensor
  // The same model as a weights file: config.* and train.* metadata, the weights and the
  // EMA weights, no "format" (what tests/test_sample.cpp writes; tools/torch_reference.py
  // exports the weights alone).
  SafeTensors weights;
  for (const auto& kv : checkpoint.metadata)
    if (kv.first.compare(0, 7, "config.") == 0 || kv.first.compare(0, 6, "train.") == 0) weights.metadata.insert(kv);
  for (const auto& nt : checkpoint.tensors)
    if (nt.first.compare(0, 5, "adam.") != 0) weights.tensors.push_back(nt);
  auto write = [&](const SafeTensors& st, const std::string& name, const std::function<void(SafeTensors&)>& corrupt) {
    SafeTensors bad = st;
    corrupt(bad);
    save_safetensors(dir / name, bad.tensors, bad.metadata);
    return dir / name;
  };
  auto set_value = [](SafeTensors& s, const std::string& name, float v) {
    for (auto& nt : s.tensors)
      if (nt.first == name) {
        nt.second = nt.second.clone();
        nt.second[2] = v;
      }
  };
  struct Case {
    const char* what;
    std::function<void(SafeTensors&)> corrupt;
    std::string message;
  };
  const std::vector<Case> cases{
      {"NaN EMA weight", [&](SafeTensors& s) { set_value(s, "ema." + first, NAN); },
       ": tensor ema." + first + " has a non-finite value (nan at index 2)"},
      // Not among the weights sampled with (EMA), but the file is corrupt all the same.
      {"Inf raw weight", [&](SafeTensors& s) { set_value(s, first, INFINITY); },
       ": tensor " + first + " has a non-finite value (inf at index 2)"},
      {"-Inf EMA weight", [&](SafeTensors& s) { set_value(s, "ema." + first, -INFINITY); },
       ": tensor ema." + first + " has a non-finite value (-inf at index 2)"},
      // The attention weights of a model whose config has none.
      {"extra tensors", [](SafeTensors& s) { s.metadata["config.attn_resolutions"] = ""; },
       "which the model does not expect"},
      {"a stray tensor", [](SafeTensors& s) { s.tensors.emplace_back("ema.notes", Tensor({3})); },
       "has ema.notes [3], which the model does not expect"},
  };
  for (const SafeTensors* base : {&checkpoint, static_cast<const SafeTensors*>(&weights)}) {
    const bool is_checkpoint = base == &checkpoint;
    CAPTURE(is_checkpoint);
    bool ema = false;
    CHECK_NOTHROW(load_model(write(*base, "good.safetensors", [](SafeTensors&) {}), true, nullptr, &ema));
    CHECK(ema);
    for (const Case& c : cases) {
      CAPTURE(c.what);
      const std::string path = write(*base, "bad.safetensors", c.corrupt);
      for (bool use_ema : {true, false}) {
        const std::string error = error_of([&] { load_model(path, use_ema, nullptr); });
        CAPTURE(error);
        CHECK(has(error, path));
        CHECK(has(error, c.message));
      }
    }
    if (is_checkpoint) {  // the Adam moments of a training checkpoint are checked too
      const std::string path = write(*base, "adam.safetensors", [&](SafeTensors& s) { set_value(s, "adam.m." + first, NAN); });
      CHECK(has(error_of([&] { load_model(path, true, nullptr); }), ": tensor adam.m." + first + " has a non-finite value"));
    }
  }
  // The extra tensors are the attention blocks', named.
  const std::string extra = write(checkpoint, "extra.safetensors", [](SafeTensors& s) { s.metadata["config.attn_resolutions"] = ""; });
  CHECK(has(error_of([&] { load_model(extra, true, nullptr); }), ".attns.0."));
  // A weights file with only the EMA weights, or only the raw weights, loads.
  const std::string ema_only = write(weights, "ema_only.safetensors", [](SafeTensors& s) {
    s.tensors.erase(std::remove_if(s.tensors.begin(), s.tensors.end(),
                                   [](const std::pair<std::string, Tensor>& nt) { return nt.first.compare(0, 4, "ema.") != 0; }),
                    s.tensors.end());
  });
  bool ema = false;
  CHECK_NOTHROW(load_model(ema_only, true, nullptr, &ema));
  CHECK(ema);
  const std::string raw_only = write(weights, "raw_only.safetensors", [](SafeTensors& s) {
    s.tensors.erase(std::remove_if(s.tensors.begin(), s.tensors.end(),
                                   [](const std::pair<std::string, Tensor>& nt) { return nt.first.compare(0, 4, "ema.") == 0; }),
                    s.tensors.end());
  });
  CHECK_NOTHROW(load_model(raw_only, true, nullptr, &ema));
  CHECK_FALSE(ema);
}
