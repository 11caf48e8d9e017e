#include "ddpm/model/nn.h"

#include <cmath>

#include "ddpm/ops/attention.h"
#include "ddpm/ops/conv.h"
#include "ddpm/ops/dropout.h"
#include "ddpm/ops/elementwise.h"
#include "ddpm/ops/group_norm.h"
#include "ddpm/ops/linear.h"

namespace ddpm {

// U(-bound, bound) with bound = 1/sqrt(fan_in): PyTorch's default for Linear and Conv2d
// (kaiming_uniform_(a=sqrt(5)) for the weight, and the same bound for the bias).
static Tensor uniform_init(const Shape& shape, int64_t fan_in, Generator& gen, Init init) {
  Tensor t(shape);
  if (init == Init::zero) return t;
  const float bound = 1.0f / std::sqrt(static_cast<float>(fan_in));
  for (int64_t i = 0; i < t.numel(); i++) t[i] = (2.0f * gen.uniform() - 1.0f) * bound;
  return t;
}

Linear::Linear(const std::string& name, int64_t in, int64_t out, Generator& gen, Init init)
    : weight(make_parameter(name + ".weight", uniform_init({out, in}, in, gen, init))),
      bias(make_parameter(name + ".bias", uniform_init({out}, in, gen, init))) {}

Var Linear::operator()(Tape& tape, const Var& x) const { return linear(tape, x, weight.var, bias.var); }

void Linear::collect(ParamList& ps) {
  ps.push_back(&weight);
  ps.push_back(&bias);
}

Conv2d::Conv2d(const std::string& name, int64_t in, int64_t out, int64_t k, int64_t stride_, int64_t pad_,
               Generator& gen, Init init)
    : weight(make_parameter(name + ".weight", uniform_init({out, in, k, k}, in * k * k, gen, init))),
      bias(make_parameter(name + ".bias", uniform_init({out}, in * k * k, gen, init))),
      stride(stride_),
      pad(pad_) {}

Var Conv2d::operator()(Tape& tape, const Var& x) const { return conv2d(tape, x, weight.var, bias.var, stride, pad); }

void Conv2d::collect(ParamList& ps) {
  ps.push_back(&weight);
  ps.push_back(&bias);
}

GroupNorm::GroupNorm(const std::string& name, int64_t groups_, int64_t channels)
    : weight(make_parameter(name + ".weight", Tensor::full({channels}, 1.0f))),
      bias(make_parameter(name + ".bias", Tensor({channels}))),
      groups(groups_) {}

Var GroupNorm::operator()(Tape& tape, const Var& x) const {
  return group_norm(tape, x, weight.var, bias.var, groups);
}

Var GroupNorm::with_silu(Tape& tape, const Var& x) const {
  return group_norm_silu(tape, x, weight.var, bias.var, groups);
}

void GroupNorm::collect(ParamList& ps) {
  ps.push_back(&weight);
  ps.push_back(&bias);
}

ResBlock::ResBlock(const std::string& name, int64_t in, int64_t out, int64_t temb_ch, int64_t groups, float dropout_,
                   uint64_t id_, Generator& gen)
    : norm1(name + ".norm1", groups, in),
      norm2(name + ".norm2", groups, out),
      conv1(name + ".conv1", in, out, 3, 1, 1, gen),
      conv2(name + ".conv2", out, out, 3, 1, 1, gen, Init::zero),
      temb_proj(name + ".temb_proj", temb_ch, out, gen),
      has_skip(in != out),
      dropout(dropout_),
      id(id_) {
  if (has_skip) skip = Conv2d(name + ".skip", in, out, 1, 1, 0, gen);
}

Var ResBlock::operator()(Tape& tape, const Var& x, const Var& temb, const ForwardContext& ctx) const {
  Var h = conv1(tape, norm1.with_silu(tape, x));                                // [N, out, H, W]
  h = add(tape, h, temb_proj(tape, silu(tape, temb)));                          // + [N, out] over H, W
  RngKey key{ctx.dropout_key.seed, make_stream(ctx.dropout_key.stream, id)};
  const Var a = norm2.with_silu(tape, h);
  const uint64_t first = static_cast<uint64_t>(ctx.first_index * (a->value.numel() / a->value.size(0)));
  h = conv2(tape, ddpm::dropout(tape, a, dropout, key, ctx.training, first));
  return add(tape, has_skip ? skip(tape, x) : x, h);
}

void ResBlock::collect(ParamList& ps) {
  norm1.collect(ps);
  conv1.collect(ps);
  temb_proj.collect(ps);
  norm2.collect(ps);
  conv2.collect(ps);
  if (has_skip) skip.collect(ps);
}

AttnBlock::AttnBlock(const std::string& name, int64_t channels, int64_t groups, Generator& gen)
    : norm(name + ".norm", groups, channels),
      q(name + ".q", channels, channels, 1, 1, 0, gen),
      k(name + ".k", channels, channels, 1, 1, 0, gen),
      v(name + ".v", channels, channels, 1, 1, 0, gen),
      proj_out(name + ".proj_out", channels, channels, 1, 1, 0, gen, Init::zero) {}

Var AttnBlock::operator()(Tape& tape, const Var& x) const {
  Var h = norm(tape, x);
  Var a = attention(tape, q(tape, h), k(tape, h), v(tape, h));  // [N, C, H, W]
  return add(tape, x, proj_out(tape, a));
}

void AttnBlock::collect(ParamList& ps) {
  norm.collect(ps);
  q.collect(ps);
  k.collect(ps);
  v.collect(ps);
  proj_out.collect(ps);
}

}  // namespace ddpm
