// nn.h: the modules the U-Net is built from. Each owns named Parameters and is
// called as `module(tape, x)`. Names mirror the module tree, dotted as in a PyTorch
// state_dict ("down.0.blocks.0.norm1.weight"); checkpoints and cross-checks use them.
//
// Initialization follows PyTorch's defaults so a PyTorch mirror can start from the same
// distribution: Linear and Conv2d draw weight and bias from U(-1/sqrt(fan_in),
// 1/sqrt(fan_in)) (kaiming_uniform with a = sqrt(5)); GroupNorm starts at weight 1,
// bias 0. Modules marked zero-init start at 0, as in Ho et al.'s code (the second conv
// of each ResBlock, the attention output projection, the output conv).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "ddpm/core/rng.h"
#include "ddpm/core/tape.h"

namespace ddpm {

using ParamList = std::vector<Parameter*>;

enum class Init { pytorch_default, zero };

struct Linear {
  Parameter weight;  // [OUT, IN]
  Parameter bias;    // [OUT]
  Linear() = default;
  Linear(const std::string& name, int64_t in, int64_t out, Generator& gen, Init init = Init::pytorch_default);
  Var operator()(Tape& tape, const Var& x) const;  // x [N, IN] -> [N, OUT]
  void collect(ParamList& ps);
};

struct Conv2d {
  Parameter weight;  // [OC, C, K, K]
  Parameter bias;    // [OC]
  int64_t stride = 1, pad = 0;
  Conv2d() = default;
  Conv2d(const std::string& name, int64_t in, int64_t out, int64_t k, int64_t stride, int64_t pad, Generator& gen,
         Init init = Init::pytorch_default);
  Var operator()(Tape& tape, const Var& x) const;  // x [N, C, H, W] -> [N, OC, OH, OW]
  void collect(ParamList& ps);
};

struct GroupNorm {
  Parameter weight;  // gamma [C]
  Parameter bias;    // beta [C]
  int64_t groups = 1;
  GroupNorm() = default;
  GroupNorm(const std::string& name, int64_t groups, int64_t channels);
  Var operator()(Tape& tape, const Var& x) const;
  // silu(this(x)) as one fused op (ops/group_norm.h): the same values, one stored
  // activation fewer.
  Var with_silu(Tape& tape, const Var& x) const;
  void collect(ParamList& ps);
};

// What a forward pass needs besides the input: train or eval mode, the key that seeds
// dropout (each ResBlock mixes in its own id, so masks never repeat), and the index of the
// input's first sample in its whole batch: a micro-batch draws the masks of its samples as
// the whole batch would.
struct ForwardContext {
  bool training = false;
  RngKey dropout_key;
  int64_t first_index = 0;
};

// ResBlock(x, temb), Ho et al.'s ResnetBlock (norm then SiLU run as one fused op):
//   h = conv1(SiLU(norm1(x)))                       [N, out, H, W]
//   h = h + temb_proj(SiLU(temb))                    temb [N, 4ch] -> [N, out], over H, W
//   h = conv2(dropout(SiLU(norm2(h))))               conv2 zero-init
//   return skip(x) + h                               skip: 1x1 conv if in != out
struct ResBlock {
  GroupNorm norm1, norm2;
  Conv2d conv1, conv2, skip;
  Linear temb_proj;
  bool has_skip = false;
  float dropout = 0.0f;
  uint64_t id = 0;  // mixed into the dropout stream
  ResBlock() = default;
  ResBlock(const std::string& name, int64_t in, int64_t out, int64_t temb_ch, int64_t groups, float dropout,
           uint64_t id, Generator& gen);
  Var operator()(Tape& tape, const Var& x, const Var& temb, const ForwardContext& ctx) const;
  void collect(ParamList& ps);
};

// AttnBlock(x), Ho et al.'s AttnBlock:
//   h = norm(x); q, k, v = 1x1 convs of h
//   h = attention(q, k, v) = v softmax(q^T k / sqrt(C))^T over the H*W positions
//   return x + proj_out(h)                           proj_out zero-init
struct AttnBlock {
  GroupNorm norm;
  Conv2d q, k, v, proj_out;
  AttnBlock() = default;
  AttnBlock(const std::string& name, int64_t channels, int64_t groups, Generator& gen);
  Var operator()(Tape& tape, const Var& x) const;
  void collect(ParamList& ps);
};

}  // namespace ddpm
