#include "ddpm/model/unet_inference.h"

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <unordered_map>

#include "ddpm/core/check.h"
#include "ddpm/core/parallel.h"
#include "ddpm/core/profile.h"
#include "ddpm/ops/attention.h"
#include "ddpm/ops/conv.h"
#include "ddpm/ops/elementwise.h"
#include "ddpm/ops/embedding.h"
#include "ddpm/ops/group_norm.h"
#include "ddpm/ops/linear.h"

namespace ddpm {

// ---------------------------------------------------------------------------
// The weights, copied from the modules (nn.h); convolutions pre-packed.

struct UNetInference::Conv {
  int64_t C = 0, OC = 0, K = 1, stride = 1, pad = 0;
  std::vector<float> packed, bias;  // conv2d_pack_weights of [OC, C*K*K]; [OC]
  std::vector<float> upsampled;     // an Upsample conv's conv2d_pack_upsampled_weights, or empty
  Conv() = default;
  explicit Conv(const ddpm::Conv2d& m, bool upsample = false)
      : C(m.weight.var->value.size(1)),
        OC(m.weight.var->value.size(0)),
        K(m.weight.var->value.size(2)),
        stride(m.stride),
        pad(m.pad),
        packed(m.weight.var->value.numel()),
        bias(m.bias.var->value.to_vector()),
        upsampled(upsample ? 16 * OC * C : 0) {
    conv2d_pack_weights(packed.data(), m.weight.var->value.data(), OC, C * K * K);
    if (upsample) conv2d_pack_upsampled_weights(upsampled.data(), m.weight.var->value.data(), OC, C);
  }
};

struct UNetInference::Norm {
  int64_t groups = 1;
  std::vector<float> gamma, beta;
  Norm() = default;
  explicit Norm(const GroupNorm& m)
      : groups(m.groups), gamma(m.weight.var->value.to_vector()), beta(m.bias.var->value.to_vector()) {}
};

struct UNetInference::Linear {
  int64_t IN = 0, OUT = 0;
  std::vector<float> weight, bias;  // [OUT, IN], [OUT]
  Linear() = default;
  explicit Linear(const ddpm::Linear& m)
      : IN(m.weight.var->value.size(1)),
        OUT(m.weight.var->value.size(0)),
        weight(m.weight.var->value.to_vector()),
        bias(m.bias.var->value.to_vector()) {}
  // out[N, OUT] = x[N, IN] weight^T + bias: linear's own kernel
  Tensor operator()(const Tensor& x) const {
    ProfileScope timer(ProfileOp::linear, 2.0 * x.size(0) * IN * OUT);
    Tensor out = Tensor::empty({x.size(0), OUT});
    linear_forward(out.data(), x.data(), weight.data(), bias.data(), x.size(0), IN, OUT);
    return out;
  }
};

struct UNetInference::ResBlock {
  Norm norm1, norm2;
  Conv conv1, conv2, skip;
  Linear temb_proj;
  bool has_skip = false;
  int64_t index = 0;  // which block of the time projections
  ResBlock(const ddpm::ResBlock& m, int64_t index_)
      : norm1(m.norm1), norm2(m.norm2), conv1(m.conv1), conv2(m.conv2), skip(m.has_skip ? Conv(m.skip) : Conv()),
        temb_proj(m.temb_proj), has_skip(m.has_skip), index(index_) {}
};

struct UNetInference::AttnBlock {
  Norm norm;
  Conv q, k, v, proj_out;
  explicit AttnBlock(const ddpm::AttnBlock& m) : norm(m.norm), q(m.q), k(m.k), v(m.v), proj_out(m.proj_out) {}
};

struct UNetInference::Level {
  std::vector<ResBlock> blocks;
  std::vector<AttnBlock> attns;
  Conv resample;
  bool has_resample = false;
};

// ---------------------------------------------------------------------------
// Workspace: one thread slot's buffers. Freed buffers are kept by size and handed out
// again, most recently freed first (still warm in cache). Every image allocates the
// same sizes in the same order, so after the first image nothing new is allocated.

class UNetInference::Workspace {
 public:
  ~Workspace() {
    for (auto& kv : free_)
      for (float* p : kv.second) std::free(p);
  }
  // n floats plus kConvSlack (the direct convolution reads up to a vector past the end
  // of its input), 64-byte aligned.
  float* get(int64_t n) {
    std::vector<float*>& list = free_[n];
    if (!list.empty()) {
      float* p = list.back();
      list.pop_back();
      return p;
    }
    const size_t bytes = ((static_cast<size_t>(n + kConvSlack) * sizeof(float)) + 63) / 64 * 64;
    void* p = std::aligned_alloc(64, bytes);
    DDPM_CHECK(p != nullptr, "unet inference: out of memory allocating " << bytes << " bytes");
    std::memset(p, 0, bytes);  // the slack is read (into lanes that are never stored) but never written
    return static_cast<float*>(p);
  }
  void put(float* p, int64_t n) { free_[n].push_back(p); }
  std::vector<const float*> channels;  // scratch: a convolution's input channel pointers
  std::vector<float> stats;             // scratch: GroupNorm's mean and rstd

 private:
  std::unordered_map<int64_t, std::vector<float*>> free_;
};

namespace {

using Workspace = UNetInference::Workspace;

// An activation [C, H, W] of one image in a workspace buffer, handed back when dropped.
class Act {
 public:
  Act() = default;
  Act(Workspace& ws, int64_t C, int64_t H, int64_t W) : ws_(&ws), n_(C * H * W), C_(C), H_(H), W_(W) {
    data_ = ws.get(n_);
  }
  Act(Act&& o) noexcept { *this = std::move(o); }
  Act& operator=(Act&& o) noexcept {
    if (this != &o) {
      release();
      ws_ = o.ws_;
      data_ = o.data_;
      n_ = o.n_;
      C_ = o.C_;
      H_ = o.H_;
      W_ = o.W_;
      o.data_ = nullptr;
    }
    return *this;
  }
  ~Act() { release(); }
  float* data() const { return data_; }
  int64_t C() const { return C_; }
  int64_t H() const { return H_; }
  int64_t W() const { return W_; }
  int64_t HW() const { return H_ * W_; }

 private:
  void release() {
    if (data_) ws_->put(data_, n_);
    data_ = nullptr;
  }
  Workspace* ws_ = nullptr;
  float* data_ = nullptr;
  int64_t n_ = 0, C_ = 0, H_ = 0, W_ = 0;
};

// A borrowed view of an activation.
struct View {
  const float* data;
  int64_t C, H, W;
  View(const Act& a) : data(a.data()), C(a.C()), H(a.H()), W(a.W()) {}  // NOLINT: a view of any Act
  View(const float* d, int64_t c, int64_t h, int64_t w) : data(d), C(c), H(h), W(w) {}
  int64_t HW() const { return H * W; }
};

}  // namespace

// ---------------------------------------------------------------------------
// One image's pass, the layers of UNet::forward in its order.

struct UNetInference::Image {
  const UNetInference& net;
  Workspace& ws;
  const float* temb_proj;  // this image's row of every block's time projection, concatenated
  const std::vector<int64_t>& temb_at;  // block index -> offset in temb_proj

  // The channel pointers of a convolution's input: planes (channel_floats apart), or for
  // 1x1 the image's channels, those of x and then of tail (the up path's concat, uncopied).
  const float* const* channels(const float* base, int64_t C, int64_t stride) {
    ws.channels.resize(C);
    for (int64_t c = 0; c < C; c++) ws.channels[c] = base + c * stride;
    return ws.channels.data();
  }
  const float* const* channels(View x, const View* tail) {
    ws.channels.resize(x.C + (tail ? tail->C : 0));
    for (int64_t c = 0; c < static_cast<int64_t>(ws.channels.size()); c++)
      ws.channels[c] = c < x.C ? x.data + c * x.HW() : tail->data + (c - x.C) * x.HW();
    return ws.channels.data();
  }

  // conv(x) with its epilogue, from x's planes (or, 1x1, its channels) at `in`.
  Act conv_from(const Conv& conv, const float* const* in, const ConvPlanes& p, const ConvEpilogue& e = {},
                Act* in_place = nullptr) {
    Act out = in_place ? std::move(*in_place) : Act(ws, conv.OC, p.OH, p.OW);
    const double flops = 2.0 * conv.OC * p.P() * conv.C * conv.K * conv.K;
    ProfileScope timer(ProfileOp::conv_forward, flops, p.H);
    conv2d_planes_forward(out.data(), in, p, conv.packed.data(), conv.bias.data(), conv.OC, e);
    return out;
  }

  // conv(x), writing x's planes first (stride 2 and conv_in). upsampled: the Upsample,
  // conv(upsample_nearest2x(x)): exact, nearest x2 written into the conv's planes; else the
  // four 2x2 phase convolutions of x (conv2d_upsampled_forward).
  Act conv(const Conv& conv, View x, bool upsampled = false) {
    const bool phases = upsampled && !conv.upsampled.empty();
    const int64_t H = upsampled && !phases ? 2 * x.H : x.H, W = upsampled && !phases ? 2 * x.W : x.W;
    const ConvPlanes p = conv2d_planes(x.C, H, W, conv.K, conv.stride, conv.pad);
    if (p.planes == 1) return conv_from(conv, channels(x, nullptr), p);
    float* planes = ws.get(x.C * p.channel_floats());
    {
      ProfileScope timer(ProfileOp::elementwise);
      for (int64_t c = 0; c < x.C; c++) {
        float* dst = planes + c * p.channel_floats();
        if (upsampled && !phases)
          conv2d_write_planes_upsampled(dst, x.data + c * x.HW(), p);
        else
          conv2d_write_planes(dst, x.data + c * x.HW(), p);
      }
    }
    Act out;
    if (phases) {
      out = Act(ws, conv.OC, 2 * x.H, 2 * x.W);
      // the flops done: 4 phases of x.HW() positions, 2x2 taps each
      ProfileScope timer(ProfileOp::conv_forward, 2.0 * conv.OC * 4 * x.HW() * conv.C * 4, 2 * x.H);
      conv2d_upsampled_forward(out.data(), channels(planes, conv.C, p.channel_floats()), p, conv.upsampled.data(),
                               conv.bias.data(), conv.OC);
    } else {
      out = conv_from(conv, channels(planes, conv.C, p.channel_floats()), p);
    }
    ws.put(planes, x.C * p.channel_floats());
    return out;
  }

  // conv(silu(norm(x))) (x's channels then tail's, if given), the norm writing the conv's
  // planes; e as conv_from.
  Act norm_silu_conv(const Norm& norm, const Conv& conv, View x, const View* tail = nullptr,
                     const ConvEpilogue& e = {}, Act* in_place = nullptr) {
    const int64_t C = x.C + (tail ? tail->C : 0);
    const ConvPlanes p = conv2d_planes(C, x.H, x.W, conv.K, conv.stride, conv.pad);
    float* planes = ws.get(C * p.channel_floats());
    ws.stats.resize(2 * norm.groups);
    {
      ProfileScope timer(ProfileOp::group_norm);
      group_norm_silu_planes_forward(planes, ws.stats.data(), ws.stats.data() + norm.groups, x.data, norm.gamma.data(),
                                     norm.beta.data(), 1, C, x.HW(), norm.groups, 1e-5f, p, tail ? tail->data : nullptr,
                                     x.C);
    }
    Act out = conv_from(conv, channels(planes, C, p.channel_floats()), p, e, in_place);
    ws.put(planes, C * p.channel_floats());
    return out;
  }

  // ResBlock (nn.h): skip(x) + conv2(silu(norm2(conv1(silu(norm1(x))) + temb_proj))), dropout off.
  // With tail, the block's input is concat_channels(x, tail) (the up path), never copied.
  Act res_block(const ResBlock& b, View x, const View* tail = nullptr) {
    const float* temb = temb_proj + temb_at[b.index];
    ConvEpilogue e1;
    e1.temb = temb;                                     // h = conv1(...) + temb_proj(silu(temb))
    Act h = norm_silu_conv(b.norm1, b.conv1, x, tail, e1);
    ConvEpilogue e2;
    if (b.has_skip) {
      const int64_t C = x.C + (tail ? tail->C : 0);
      Act s = conv_from(b.skip, channels(x, tail), conv2d_planes(C, x.H, x.W, 1, 1, 0));  // skip(x), 1x1
      e2.residual = s.data();                          // skip(x) + conv2(...), in place in s
      return norm_silu_conv(b.norm2, b.conv2, h, nullptr, e2, &s);
    }
    DDPM_CHECK(!tail, "unet inference: a concatenated input needs a skip conv");
    e2.residual = x.data;                               // x + conv2(...)
    return norm_silu_conv(b.norm2, b.conv2, h, nullptr, e2);
  }

  // AttnBlock (nn.h): x + proj_out(attention(q(h), k(h), v(h))), h = norm(x).
  Act attn_block(const AttnBlock& b, View x) {
    const int64_t C = x.C, P = x.HW();
    const ConvPlanes p = conv2d_planes(C, x.H, x.W, 1, 1, 0);
    Act h(ws, C, x.H, x.W);
    ws.stats.resize(2 * b.norm.groups);
    {
      ProfileScope timer(ProfileOp::group_norm);
      group_norm_forward(h.data(), ws.stats.data(), ws.stats.data() + b.norm.groups, x.data, b.norm.gamma.data(),
                         b.norm.beta.data(), 1, C, P, b.norm.groups, 1e-5f);
    }
    const float* const* in = channels(h, nullptr);
    Act q = conv_from(b.q, in, p), k = conv_from(b.k, in, p), v = conv_from(b.v, in, p);
    h = Act();
    Act a(ws, C, x.H, x.W);
    {
      float* A = ws.get(P * P);
      ProfileScope timer(ProfileOp::attention, 4.0 * P * P * C, x.H);
      attention_forward(a.data(), A, q.data(), k.data(), v.data(), 1, C, P);
      ws.put(A, P * P);
    }
    ConvEpilogue e;
    e.residual = x.data;  // x + proj_out(a)
    return conv_from(b.proj_out, channels(a, nullptr), p, e);
  }

  // UNet::forward for one image: x [in_ch, S, S] -> out [out_ch, S, S].
  void run(const float* x, float* out) {
    const UNetConfig& c = net.config_;
    std::vector<Act> hs;  // the skip connections, pushed on the way down
    hs.reserve(1 + net.down_.size() * (c.num_res_blocks + 1));
    hs.push_back(conv(*net.conv_in_, View(x, c.in_ch, c.image_size, c.image_size)));
    View h = hs.back();
    for (const Level& level : net.down_) {
      for (size_t j = 0; j < level.blocks.size(); j++) {
        Act o = res_block(level.blocks[j], h);
        if (!level.attns.empty()) o = attn_block(level.attns[j], o);
        hs.push_back(std::move(o));
        h = hs.back();
      }
      if (level.has_resample) {
        hs.push_back(conv(level.resample, h));  // Downsample: conv3x3 stride 2
        h = hs.back();
      }
    }
    Act cur = res_block(*net.mid_block1_, h);
    cur = attn_block(*net.mid_attn_, cur);
    cur = res_block(*net.mid_block2_, cur);
    h = cur;
    for (int64_t i = static_cast<int64_t>(net.up_.size()) - 1; i >= 0; i--) {
      const Level& level = net.up_[i];
      for (size_t j = 0; j < level.blocks.size(); j++) {
        const View skip = hs.back();
        Act o = res_block(level.blocks[j], h, &skip);  // ResBlock(concat_channels(h, skip))
        hs.pop_back();
        if (!level.attns.empty()) o = attn_block(level.attns[j], o);
        cur = std::move(o);
        h = cur;
      }
      if (level.has_resample) {
        cur = conv(level.resample, h, /*upsampled=*/true);  // Upsample: nearest x2, then conv3x3
        h = cur;
      }
    }
    DDPM_CHECK(hs.empty(), "unet inference: internal error, " << hs.size() << " skip connections left");
    // out = conv_out(silu(norm_out(h))), written straight into the output
    const ConvPlanes p = conv2d_planes(h.C, h.H, h.W, 3, 1, 1);
    float* planes = ws.get(h.C * p.channel_floats());
    ws.stats.resize(2 * net.norm_out_->groups);
    {
      ProfileScope timer(ProfileOp::group_norm);
      group_norm_silu_planes_forward(planes, ws.stats.data(), ws.stats.data() + net.norm_out_->groups, h.data,
                                     net.norm_out_->gamma.data(), net.norm_out_->beta.data(), 1, h.C, h.HW(),
                                     net.norm_out_->groups, 1e-5f, p);
    }
    {
      const Conv& co = *net.conv_out_;
      ProfileScope timer(ProfileOp::conv_forward, 2.0 * co.OC * p.P() * co.C * 9, p.H);
      conv2d_planes_forward(out, channels(planes, co.C, p.channel_floats()), p, co.packed.data(), co.bias.data(),
                            co.OC);
    }
    ws.put(planes, h.C * p.channel_floats());
  }
};

// ---------------------------------------------------------------------------

UNetInference::UNetInference(const UNet& model, bool exact) : config_(model.config_) {
  temb_dense0_ = std::make_unique<Linear>(model.temb_dense0);
  temb_dense1_ = std::make_unique<Linear>(model.temb_dense1);
  if (config_.num_classes > 0) class_emb_ = model.class_emb.var->value.to_vector();
  conv_in_ = std::make_unique<Conv>(model.conv_in);
  auto level = [&](const UNet::Level& m, bool upsample) {
    Level l;
    for (const ddpm::ResBlock& b : m.blocks) l.blocks.emplace_back(b, res_blocks_++);
    for (const ddpm::AttnBlock& a : m.attns) l.attns.emplace_back(a);
    l.has_resample = m.has_resample;
    if (m.has_resample) l.resample = Conv(m.resample, upsample && !exact);
    return l;
  };
  for (const UNet::Level& m : model.down) down_.push_back(level(m, false));
  mid_block1_ = std::make_unique<ResBlock>(model.mid_block1, res_blocks_++);
  mid_attn_ = std::make_unique<AttnBlock>(model.mid_attn);
  mid_block2_ = std::make_unique<ResBlock>(model.mid_block2, res_blocks_++);
  for (const UNet::Level& m : model.up) up_.push_back(level(m, true));  // up_[i] is level i, run from the last
  norm_out_ = std::make_unique<Norm>(model.norm_out);
  conv_out_ = std::make_unique<Conv>(model.conv_out);
}

UNetInference::~UNetInference() = default;

Tensor UNetInference::time_embedding(const std::vector<int64_t>& t, const std::vector<int64_t>* labels) const {
  const UNetConfig& c = config_;
  const int64_t N = static_cast<int64_t>(t.size()), temb_ch = c.temb_ch();
  // temb = dense1(silu(dense0(sinusoid(t)))) (+ class_emb[label])
  std::vector<float> tf(t.begin(), t.end());
  Tensor temb = (*temb_dense0_)(timestep_embedding(tf, c.ch));  // [N, 4ch]
  silu_forward(temb.data(), temb.data(), temb.numel());
  temb = (*temb_dense1_)(temb);
  if (labels) {
    DDPM_CHECK(static_cast<int64_t>(labels->size()) == N, "unet inference: " << labels->size() << " labels for " << N);
    for (int64_t n = 0; n < N; n++) {
      const int64_t id = (*labels)[n];
      DDPM_CHECK(id >= 0 && id <= c.num_classes,
                 "unet inference: labels[" << n << "] = " << id << " is outside [0, " << c.num_classes << "]");
      for (int64_t i = 0; i < temb_ch; i++) temb[n * temb_ch + i] += class_emb_[id * temb_ch + i];  // add
    }
  }
  // Every ResBlock reads silu(temb).
  silu_forward(temb.data(), temb.data(), temb.numel());
  return temb;
}

std::vector<float> UNetInference::resblock_temb_table(const Tensor& temb, std::vector<int64_t>& temb_at) const {
  const int64_t N = temb.size(0);
  std::vector<const ResBlock*> blocks(res_blocks_);
  for (const std::vector<Level>* path : {&down_, &up_})
    for (const Level& l : *path)
      for (const ResBlock& b : l.blocks) blocks[b.index] = &b;
  blocks[mid_block1_->index] = mid_block1_.get();
  blocks[mid_block2_->index] = mid_block2_.get();
  temb_at.assign(res_blocks_ + 1, 0);
  for (int64_t i = 0; i < res_blocks_; i++) temb_at[i + 1] = temb_at[i] + blocks[i]->temb_proj.OUT;
  const int64_t row = temb_at[res_blocks_];
  std::vector<float> table(N * row);
  for (int64_t i = 0; i < res_blocks_; i++) {
    const Tensor proj = blocks[i]->temb_proj(temb);
    for (int64_t n = 0; n < N; n++)
      std::memcpy(&table[n * row + temb_at[i]], proj.data() + n * proj.size(1), proj.size(1) * sizeof(float));
  }
  return table;
}

Tensor UNetInference::forward(const Tensor& x_t, const std::vector<int64_t>& t, const std::vector<int64_t>* labels) {
  std::lock_guard<std::mutex> lock(mutex_);  // the workspaces serve one pass at a time
  const UNetConfig& c = config_;
  const Shape& xs = x_t.shape();
  DDPM_CHECK(xs.size() == 4 && xs[1] == c.in_ch && xs[2] == c.image_size && xs[3] == c.image_size,
             "unet inference: input " << x_t.shape_str() << ", expected [N, " << c.in_ch << ", " << c.image_size
                                      << ", " << c.image_size << "]");
  const int64_t N = xs[0];
  DDPM_CHECK(static_cast<int64_t>(t.size()) == N, "unet inference: " << t.size() << " timesteps for a batch of " << N);
  DDPM_CHECK((labels != nullptr) == (c.num_classes > 0),
             "unet inference: " << (labels ? "labels given to an unconditional model"
                                           : "a class-conditional model needs labels (use the null class for none)"));

  // The time embedding for the whole batch, and every ResBlock's temb_proj(silu(temb)).
  const Tensor temb = time_embedding(t, labels);
  std::vector<int64_t> temb_at;
  const std::vector<float> temb_proj = resblock_temb_table(temb, temb_at);
  const int64_t row = temb_at[res_blocks_];

  // The images, each on one thread: slot s takes images from a shared counter with its
  // own workspace, so the split never shows in the values.
  Tensor out = Tensor::empty({N, c.out_ch(), c.image_size, c.image_size});
  const int64_t slots = std::max<int64_t>(1, std::min<int64_t>(N, num_threads()));
  while (static_cast<int64_t>(workspaces_.size()) < slots) workspaces_.push_back(std::make_unique<Workspace>());
  const int64_t in_size = c.in_ch * c.image_size * c.image_size, out_size = c.out_ch() * c.image_size * c.image_size;
  std::atomic<int64_t> next{0};
  parallel_for(slots, [&](int64_t s0, int64_t s1) {
    for (int64_t s = s0; s < s1; s++) {
      for (int64_t n = next++; n < N; n = next++) {
        Image image{*this, *workspaces_[s], temb_proj.data() + n * row, temb_at};
        image.run(x_t.data() + n * in_size, out.data() + n * out_size);
      }
    }
  });
  return out;
}

}  // namespace ddpm
