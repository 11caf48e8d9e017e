// unet.h: the DDPM U-Net of Ho et al. 2020, for square images of 1 or 3 channels (28x28 gray
// for tiny and small, 32x32 RGB for cifar10; resized_config for other sizes).
//
//   temb = dense1(SiLU(dense0(sinusoid(t, ch))))            [N, 4ch]
//          (+ class_emb[label] when conditional)             (classifier-free guidance)
//   h = conv_in(x); hs = [h]
//   down, level i = 0..L-1 with out = ch * ch_mult[i]:
//     num_res_blocks x { h = ResBlock(h); if res in attn: h = AttnBlock(h); push h }
//     if i < L-1: h = Downsample(h) (conv3x3, stride 2, pad 1); push h
//   mid: ResBlock, AttnBlock, ResBlock
//   up, level i = L-1..0:
//     (num_res_blocks + 1) x { h = ResBlock(concat(h, hs.pop())); if res in attn: AttnBlock }
//     if i > 0: h = Upsample(h) (nearest x2, then conv3x3)
//   out = conv_out(SiLU(norm_out(h)))                        [N, out_ch, H, W], zero-init
//
// The sinusoid is fed the paper's t in 1..T (Ho et al.'s TF code feeds t - 1).
// 28 -> 14 -> 7 with stride-2 convs (pad 1): 7 -> 14 -> 28 by nearest upsampling.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "ddpm/model/nn.h"

namespace ddpm {

struct UNetConfig {
  std::string name = "tiny";
  int64_t image_size = 28;
  int64_t in_ch = 1;
  int64_t ch = 32;
  std::vector<int64_t> ch_mult = {1, 2, 2};
  int64_t num_res_blocks = 1;
  std::vector<int64_t> attn_resolutions = {7};
  int64_t groups = 8;
  float dropout = 0.0f;
  int64_t num_classes = 0;        // > 0: class-conditional, with one extra "null" class
  bool learned_variance = false;  // output 2*in_ch channels: the prediction, then r (the variance interpolation)

  int64_t out_ch() const { return learned_variance ? 2 * in_ch : in_ch; }
  int64_t temb_ch() const { return 4 * ch; }
  std::map<std::string, std::string> to_metadata() const;  // keys "config.*"
  // Reads and validates the "config.*" keys; errors name `source` (the file's path: no
  // default, so every caller names it) and the key.
  static UNetConfig from_metadata(const std::map<std::string, std::string>& m, const std::string& source);
  // Sizes positive and within bounds (a hostile file cannot ask for terabytes or
  // overflow a size), channels divisible by groups, the image halving per level.
  void validate() const;
};

// "tiny" (1,112,801 parameters), "small" (6,469,889), "cifar10" (Ho et al. 2020's CIFAR-10
// model, 35,746,307: ch 128, ch_mult 1,2,2,2, 2 res blocks, attention at 16, dropout 0.1,
// 32x32x3), or "minimal" (a few thousand, 8x8 images, for tests). Throws for any other name.
UNetConfig unet_config(const std::string& name);

// `c` for images of side `image_size`: the attention resolutions follow it, level by level
// (tiny's attention at 7 of 28 is at 8 of 32: the level after two halvings). Throws unless
// image_size is a multiple of 2^(levels-1).
UNetConfig resized_config(const UNetConfig& c, int64_t image_size);

class UNet {
 public:
  explicit UNet(const UNetConfig& config, uint64_t seed = 0);
  UNet(const UNet&) = delete;
  UNet& operator=(const UNet&) = delete;

  // x [N, in_ch, S, S], t[i] in 1..T -> [N, out_ch, S, S]. labels (size N, values in
  // 0..num_classes, num_classes meaning "null") only for a conditional model.
  Var forward(Tape& tape, const Var& x, const std::vector<int64_t>& t, const ForwardContext& ctx,
              const std::vector<int64_t>* labels = nullptr) const;

  ParamList parameters();  // in a fixed order (construction order)
  int64_t num_parameters();
  const UNetConfig& config() const { return config_; }

 private:
  friend class UNetInference;  // copies the weights for the tape-free pass (unet_inference.h)
  struct Level {
    std::vector<ResBlock> blocks;
    std::vector<AttnBlock> attns;  // empty, or one per block
    Conv2d resample;               // Downsample or Upsample conv
    bool has_resample = false;
  };
  UNetConfig config_;
  Linear temb_dense0, temb_dense1;
  Parameter class_emb;  // [num_classes + 1, 4ch] when conditional
  Conv2d conv_in;
  std::vector<Level> down, up;  // up[i] is level i (run in reverse order)
  ResBlock mid_block1, mid_block2;
  AttnBlock mid_attn;
  GroupNorm norm_out;
  Conv2d conv_out;
};

}  // namespace ddpm
