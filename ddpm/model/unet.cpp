#include "ddpm/model/unet.h"

#include <algorithm>
#include <cctype>
#include <sstream>

#include "ddpm/core/check.h"
#include "ddpm/ops/elementwise.h"
#include "ddpm/ops/embedding.h"
#include "ddpm/ops/shape.h"

namespace ddpm {

static std::string join(const std::vector<int64_t>& v) {
  std::string s;
  for (size_t i = 0; i < v.size(); i++) s += (i ? "," : "") + std::to_string(v[i]);
  return s;
}

static std::vector<int64_t> split_ints(const std::string& source, const std::string& key, const std::string& s) {
  std::vector<int64_t> v;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ',')) {
    bool ok = !item.empty() && (std::isdigit(static_cast<unsigned char>(item[0])) || item[0] == '-');
    if (ok) {
      try {
        size_t used = 0;
        v.push_back(std::stoll(item, &used));
        ok = used == item.size();
      } catch (...) {
        ok = false;
      }
    }
    DDPM_CHECK(ok, source << ": metadata 'config." << key << "' = '" << s
                          << "' is not a comma-separated list of integers; the file is corrupt or not a ddpm checkpoint");
  }
  return v;
}

std::map<std::string, std::string> UNetConfig::to_metadata() const {
  std::ostringstream dropout_str;
  dropout_str << dropout;
  return {{"config.name", name},
          {"config.image_size", std::to_string(image_size)},
          {"config.in_ch", std::to_string(in_ch)},
          {"config.ch", std::to_string(ch)},
          {"config.ch_mult", join(ch_mult)},
          {"config.num_res_blocks", std::to_string(num_res_blocks)},
          {"config.attn_resolutions", join(attn_resolutions)},
          {"config.groups", std::to_string(groups)},
          {"config.dropout", dropout_str.str()},
          {"config.num_classes", std::to_string(num_classes)},
          {"config.learned_variance", learned_variance ? "1" : "0"}};
}

UNetConfig UNetConfig::from_metadata(const std::map<std::string, std::string>& m, const std::string& source) {
  auto get = [&](const std::string& key) -> const std::string& {
    auto it = m.find("config." + key);
    DDPM_CHECK(it != m.end(), source << ": metadata has no 'config." << key
                                     << "' (is this a ddpm checkpoint? a state dict from elsewhere needs the "
                                        "config.* keys, see docs/training.md, 'Checkpoint format')");
    return it->second;
  };
  auto get_int = [&](const std::string& key) {
    auto v = split_ints(source, key, get(key));
    DDPM_CHECK(v.size() == 1, source << ": metadata 'config." << key << "' = '" << get(key)
                                     << "' is not one integer; the file is corrupt");
    return v[0];
  };
  UNetConfig c;
  c.name = get("name");
  c.image_size = get_int("image_size");
  c.in_ch = get_int("in_ch");
  c.ch = get_int("ch");
  c.ch_mult = split_ints(source, "ch_mult", get("ch_mult"));
  c.num_res_blocks = get_int("num_res_blocks");
  c.attn_resolutions = split_ints(source, "attn_resolutions", get("attn_resolutions"));
  c.groups = get_int("groups");
  const std::string& dropout = get("dropout");
  size_t used = 0;
  try {
    c.dropout = std::stof(dropout, &used);
  } catch (...) {
    used = 0;
  }
  DDPM_CHECK(used > 0 && used == dropout.size(),
             source << ": metadata 'config.dropout' = '" << dropout << "' is not a number; the file is corrupt");
  c.num_classes = get_int("num_classes");
  c.learned_variance = get_int("learned_variance") != 0;
  try {
    c.validate();
  } catch (const Error& e) {
    DDPM_FAIL(source << ": the model config in its metadata is invalid: " << e.what()
                     << "; the file is corrupt or was not written by ddpm");
  }
  return c;
}

void UNetConfig::validate() const {
  // Bounds far above any model this CPU trainer can train, low enough that every size
  // product below stays far inside int64 and a hostile file cannot ask for terabytes.
  DDPM_CHECK(image_size >= 1 && image_size <= 1024, "config '" << name << "': image_size " << image_size
                                                                << " not in 1..1024");
  DDPM_CHECK(in_ch >= 1 && in_ch <= 64, "config '" << name << "': in_ch " << in_ch << " not in 1..64");
  DDPM_CHECK(ch >= 4 && ch <= 4096 && ch % 2 == 0,
             "config '" << name << "': ch " << ch << " must be even and in 4..4096 (the timestep embedding has ch sinusoids)");
  DDPM_CHECK(!ch_mult.empty() && ch_mult.size() <= 8,
             "config '" << name << "': ch_mult has " << ch_mult.size() << " levels, expected 1..8");
  DDPM_CHECK(num_res_blocks >= 1 && num_res_blocks <= 64,
             "config '" << name << "': num_res_blocks " << num_res_blocks << " not in 1..64");
  DDPM_CHECK(groups >= 1 && groups <= ch, "config '" << name << "': groups " << groups << " not in 1..ch (" << ch << ")");
  DDPM_CHECK(dropout >= 0.0f && dropout < 1.0f, "config '" << name << "': dropout " << dropout << " not in [0, 1)");
  DDPM_CHECK(num_classes >= 0 && num_classes <= 1000000,
             "config '" << name << "': num_classes " << num_classes << " not in 0..1000000");
  DDPM_CHECK(attn_resolutions.size() <= 64,
             "config '" << name << "': " << attn_resolutions.size() << " attention resolutions, expected at most 64");
  int64_t res = image_size, widest = 0;
  for (size_t i = 0; i < ch_mult.size(); i++) {
    DDPM_CHECK(ch_mult[i] >= 1 && ch_mult[i] <= 64, "config '" << name << "': ch_mult[" << i << "] = " << ch_mult[i]
                                                                << " not in 1..64");
    DDPM_CHECK((ch * ch_mult[i]) % groups == 0,
               "config '" << name << "': channels " << ch * ch_mult[i] << " not divisible by " << groups
                          << " groups");
    widest = std::max(widest, ch * ch_mult[i]);
    if (i + 1 < ch_mult.size()) {
      DDPM_CHECK(res % 2 == 0, "config '" << name << "': image size " << image_size << " does not halve "
                                          << ch_mult.size() - 1 << " times");
      res /= 2;
    }
  }
  DDPM_CHECK(ch % groups == 0, "config '" << name << "': ch " << ch << " not divisible by " << groups << " groups");
  // An upper bound on the parameter count (in double: it cannot overflow). Per ResBlock
  // with C_in <= 2 C and C_out <= C (C the widest level): two 3x3 convs, the skip, the
  // time projection, plus an attention block each; 2 resampling convs per level; the
  // time MLP and the class embedding.
  const double C = static_cast<double>(widest), c = static_cast<double>(ch);
  const double levels = static_cast<double>(ch_mult.size()), blocks = levels * (2.0 * num_res_blocks + 1) + 2;
  const double bound = blocks * (27 * C * C + 2 * C * C + 4 * c * C + 8 * C + 4 * C * C + 4 * C) + levels * 18 * C * C +
                       20 * c * c + (num_classes + 1.0) * 4 * c + 18.0 * in_ch * c + 16 * c;
  DDPM_CHECK(bound <= 1.0 * (int64_t(1) << 30),
             "config '" << name << "': up to " << static_cast<int64_t>(bound)
                        << " parameters, more than the 2^30 (4 GiB) this CPU trainer allows");
}

UNetConfig unet_config(const std::string& name) {
  UNetConfig c;
  c.name = name;
  if (name == "tiny") {
    // the defaults above
  } else if (name == "small") {
    c.ch = 64;
    c.num_res_blocks = 2;
    c.attn_resolutions = {14};
    c.groups = 32;
    c.dropout = 0.1f;
  } else if (name == "cifar10") {
    // Ho et al. 2020, Appendix B: the CIFAR-10 model (35.7M parameters), 32x32 RGB
    c.image_size = 32;
    c.in_ch = 3;
    c.ch = 128;
    c.ch_mult = {1, 2, 2, 2};
    c.num_res_blocks = 2;
    c.attn_resolutions = {16};
    c.groups = 32;
    c.dropout = 0.1f;
  } else if (name == "minimal") {
    c.image_size = 8;
    c.ch = 8;
    c.ch_mult = {1, 2};
    c.num_res_blocks = 1;
    c.attn_resolutions = {4};
    c.groups = 2;
  } else {
    DDPM_FAIL("unknown model '" << name << "': use tiny, small, cifar10 or minimal");
  }
  return c;
}

UNetConfig resized_config(const UNetConfig& c, int64_t image_size) {
  const int64_t levels = static_cast<int64_t>(c.ch_mult.size());
  const int64_t factor = int64_t(1) << (levels - 1);  // the image halves levels - 1 times
  DDPM_CHECK(image_size >= 1 && image_size % factor == 0,
             "config '" << c.name << "': image size " << image_size << " is not a multiple of " << factor << " (its "
                        << levels << " levels halve the image " << levels - 1 << " times)");
  UNetConfig r = c;
  r.image_size = image_size;
  r.attn_resolutions.clear();
  int64_t from = c.image_size, to = image_size;
  for (int64_t level = 0; level < levels; level++, from /= 2, to /= 2)
    if (std::find(c.attn_resolutions.begin(), c.attn_resolutions.end(), from) != c.attn_resolutions.end())
      r.attn_resolutions.push_back(to);
  return r;
}

UNet::UNet(const UNetConfig& config, uint64_t seed) : config_(config) {
  config_.validate();
  Generator gen(seed, make_stream(/*purpose=*/0x494e4954 /* "INIT" */));
  const UNetConfig& c = config_;
  const int64_t temb_ch = c.temb_ch();
  const int64_t levels = static_cast<int64_t>(c.ch_mult.size());
  auto has_attn = [&](int64_t res) {
    return std::find(c.attn_resolutions.begin(), c.attn_resolutions.end(), res) != c.attn_resolutions.end();
  };
  uint64_t block_id = 0;

  temb_dense0 = Linear("temb.dense0", c.ch, temb_ch, gen);
  temb_dense1 = Linear("temb.dense1", temb_ch, temb_ch, gen);
  if (c.num_classes > 0) {
    // nn.Embedding's default init is N(0, 1).
    Tensor table({c.num_classes + 1, temb_ch});
    for (int64_t i = 0; i < table.numel(); i++) table[i] = gen.normal();
    class_emb = make_parameter("class_emb.weight", table);
  }
  conv_in = Conv2d("conv_in", c.in_ch, c.ch, 3, 1, 1, gen);

  // Down path; remember each pushed h's channels for the up path's concats.
  std::vector<int64_t> hs_ch = {c.ch};
  int64_t ch_now = c.ch, res = c.image_size;
  down.resize(levels);
  for (int64_t i = 0; i < levels; i++) {
    const int64_t out = c.ch * c.ch_mult[i];
    const std::string name = "down." + std::to_string(i);
    for (int64_t j = 0; j < c.num_res_blocks; j++) {
      down[i].blocks.emplace_back(name + ".blocks." + std::to_string(j), ch_now, out, temb_ch, c.groups, c.dropout,
                                  block_id++, gen);
      ch_now = out;
      if (has_attn(res)) down[i].attns.emplace_back(name + ".attns." + std::to_string(j), ch_now, c.groups, gen);
      hs_ch.push_back(ch_now);
    }
    if (i + 1 < levels) {
      down[i].resample = Conv2d(name + ".downsample.conv", ch_now, ch_now, 3, 2, 1, gen);
      down[i].has_resample = true;
      hs_ch.push_back(ch_now);
      res /= 2;
    }
  }

  mid_block1 = ResBlock("mid.block1", ch_now, ch_now, temb_ch, c.groups, c.dropout, block_id++, gen);
  mid_attn = AttnBlock("mid.attn1", ch_now, c.groups, gen);
  mid_block2 = ResBlock("mid.block2", ch_now, ch_now, temb_ch, c.groups, c.dropout, block_id++, gen);

  up.resize(levels);
  for (int64_t i = levels - 1; i >= 0; i--) {
    const int64_t out = c.ch * c.ch_mult[i];
    const std::string name = "up." + std::to_string(i);
    for (int64_t j = 0; j < c.num_res_blocks + 1; j++) {
      const int64_t skip_ch = hs_ch.back();
      hs_ch.pop_back();
      up[i].blocks.emplace_back(name + ".blocks." + std::to_string(j), ch_now + skip_ch, out, temb_ch, c.groups,
                                c.dropout, block_id++, gen);
      ch_now = out;
      if (has_attn(res)) up[i].attns.emplace_back(name + ".attns." + std::to_string(j), ch_now, c.groups, gen);
    }
    if (i > 0) {
      up[i].resample = Conv2d(name + ".upsample.conv", ch_now, ch_now, 3, 1, 1, gen);
      up[i].has_resample = true;
      res *= 2;
    }
  }

  norm_out = GroupNorm("norm_out", c.groups, ch_now);
  conv_out = Conv2d("conv_out", ch_now, c.out_ch(), 3, 1, 1, gen, Init::zero);
}

Var UNet::forward(Tape& tape, const Var& x, const std::vector<int64_t>& t, const ForwardContext& ctx,
                  const std::vector<int64_t>* labels) const {
  const UNetConfig& c = config_;
  const Shape& xs = x->value.shape();
  DDPM_CHECK(xs.size() == 4 && xs[1] == c.in_ch && xs[2] == c.image_size && xs[3] == c.image_size,
             "unet: input " << x->value.shape_str() << ", expected [N, " << c.in_ch << ", " << c.image_size << ", "
                            << c.image_size << "]");
  DDPM_CHECK(static_cast<int64_t>(t.size()) == xs[0],
             "unet: " << t.size() << " timesteps for a batch of " << xs[0]);
  DDPM_CHECK((labels != nullptr) == (c.num_classes > 0),
             "unet: " << (labels ? "labels given to an unconditional model"
                                 : "a class-conditional model needs labels (use the null class for none)"));

  // Timestep embedding (Ho et al. 2020, Appendix B: the Transformer sinusoid).
  std::vector<float> tf(t.begin(), t.end());
  Var temb = constant(timestep_embedding(tf, c.ch));                     // [N, ch]
  temb = temb_dense1(tape, silu(tape, temb_dense0(tape, temb)));         // [N, 4ch]
  if (labels) {
    DDPM_CHECK(static_cast<int64_t>(labels->size()) == xs[0], "unet: " << labels->size() << " labels for " << xs[0]);
    temb = add(tape, temb, embedding(tape, *labels, class_emb.var));      // + class embedding
  }

  Var h = conv_in(tape, x);
  std::vector<Var> hs = {h};
  for (const Level& level : down) {
    for (size_t j = 0; j < level.blocks.size(); j++) {
      h = level.blocks[j](tape, h, temb, ctx);
      if (!level.attns.empty()) h = level.attns[j](tape, h);
      hs.push_back(h);
    }
    if (level.has_resample) {
      h = level.resample(tape, h);  // Downsample: conv3x3 stride 2
      hs.push_back(h);
    }
  }

  h = mid_block1(tape, h, temb, ctx);
  h = mid_attn(tape, h);
  h = mid_block2(tape, h, temb, ctx);

  for (int64_t i = static_cast<int64_t>(up.size()) - 1; i >= 0; i--) {
    const Level& level = up[i];
    for (size_t j = 0; j < level.blocks.size(); j++) {
      h = level.blocks[j](tape, concat_channels(tape, h, hs.back()), temb, ctx);
      hs.pop_back();
      if (!level.attns.empty()) h = level.attns[j](tape, h);
    }
    if (level.has_resample) h = level.resample(tape, upsample_nearest2x(tape, h));  // Upsample
  }
  DDPM_CHECK(hs.empty(), "unet: internal error, " << hs.size() << " skip connections left");

  return conv_out(tape, norm_out.with_silu(tape, h));  // SiLU(norm_out(h)), fused
}

ParamList UNet::parameters() {
  ParamList ps;
  temb_dense0.collect(ps);
  temb_dense1.collect(ps);
  if (config_.num_classes > 0) ps.push_back(&class_emb);
  conv_in.collect(ps);
  for (Level& level : down) {
    for (size_t j = 0; j < level.blocks.size(); j++) {
      level.blocks[j].collect(ps);
      if (!level.attns.empty()) level.attns[j].collect(ps);
    }
    if (level.has_resample) level.resample.collect(ps);
  }
  mid_block1.collect(ps);
  mid_attn.collect(ps);
  mid_block2.collect(ps);
  for (int64_t i = static_cast<int64_t>(up.size()) - 1; i >= 0; i--) {
    Level& level = up[i];
    for (size_t j = 0; j < level.blocks.size(); j++) {
      level.blocks[j].collect(ps);
      if (!level.attns.empty()) level.attns[j].collect(ps);
    }
    if (level.has_resample) level.resample.collect(ps);
  }
  norm_out.collect(ps);
  conv_out.collect(ps);
  return ps;
}

int64_t UNet::num_parameters() {
  int64_t n = 0;
  for (Parameter* p : parameters()) n += p->var->value.numel();
  return n;
}

}  // namespace ddpm
