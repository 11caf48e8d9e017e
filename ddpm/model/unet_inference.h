// unet_inference.h: the U-Net's forward pass for sampling, with no tape.
//
// UNet::forward records every op for backward and keeps every activation alive while the
// tape lives. Sampling needs none of that: 1000 forward passes per image, no gradient.
// UNetInference runs the same network (the same weights, the same ops in the same
// order) as plain kernel calls, and
//   - saves nothing for backward: each buffer is handed back as soon as its last reader
//     is done, to a per-thread workspace that hands it out again (after the first image
//     no memory comes from the system);
//   - fuses what the tape keeps apart: GroupNorm + SiLU write the next convolution's
//     input planes directly (group_norm_silu_planes_forward), the conv bias, the
//     time-embedding add and the residual add run in the convolution's epilogue
//     (conv2d_planes_forward), the skip add in place in the skip conv's output, the up
//     path's concat is never copied (its two halves are read where they are), and the
//     Upsample's nearest x2 and 3x3 conv are one op: four 2x2 convolutions of the small
//     image (conv2d_upsampled_forward), 2.25x fewer multiplies;
//   - runs images in parallel, each image's whole pass on one thread (the convolutions'
//     direct kernel is single-threaded), so threads never meet inside a pass.
// The values are the same for any thread count. With exact = true they are bit-identical
// to UNet::forward in eval mode (every kernel does the training pass's arithmetic in its
// order; the Upsample then runs as nearest x2 written into the conv's planes, and the
// 3x3 conv). The default rounds differently in the Upsample only (its summed weights, a
// few float ulps); its output is within 2e-6 of the exact one's largest value
// (tests/model/test_unet_inference.cpp).
//
// The weights are copied (convolutions pre-packed) at construction: a UNetInference is
// a snapshot. Build a new one after the weights change (ddpm/app/sampling.cpp builds one
// per sampling model). Concurrent calls of forward take turns.
#pragma once

#include <memory>
#include <mutex>
#include <vector>

#include "ddpm/model/unet.h"

namespace ddpm {

class UNetInference {
 public:
  explicit UNetInference(const UNet& model, bool exact = false);
  ~UNetInference();
  UNetInference(const UNetInference&) = delete;
  UNetInference& operator=(const UNetInference&) = delete;

  // As UNet::forward in eval mode: x_t [N, in_ch, S, S], t[i] in 1..T -> [N, out_ch, S, S];
  // labels (size N, values 0..num_classes) only for a class-conditional model.
  Tensor forward(const Tensor& x_t, const std::vector<int64_t>& t, const std::vector<int64_t>* labels = nullptr);

  const UNetConfig& config() const { return config_; }

  struct Conv;
  struct Norm;
  struct Linear;
  struct ResBlock;
  struct AttnBlock;
  struct Level;
  class Workspace;

 private:
  struct Image;  // one image's pass
  // The steps of forward: the batch's time embedding (silu applied, as every ResBlock
  // reads it), then each ResBlock's projection of it, row n of `table` image n's, block i
  // at columns temb_at[i]..temb_at[i+1].
  Tensor time_embedding(const std::vector<int64_t>& t, const std::vector<int64_t>* labels) const;
  std::vector<float> resblock_temb_table(const Tensor& temb, std::vector<int64_t>& temb_at) const;
  UNetConfig config_;
  std::unique_ptr<Linear> temb_dense0_, temb_dense1_;
  std::vector<float> class_emb_;  // [num_classes + 1, 4ch] when conditional
  std::unique_ptr<Conv> conv_in_, conv_out_;
  std::vector<Level> down_, up_;
  std::unique_ptr<ResBlock> mid_block1_, mid_block2_;
  std::unique_ptr<AttnBlock> mid_attn_;
  std::unique_ptr<Norm> norm_out_;
  int64_t res_blocks_ = 0;  // ResBlocks in the network: rows of the per-block time projections
  std::vector<std::unique_ptr<Workspace>> workspaces_;  // one per thread slot
  std::mutex mutex_;                                    // one forward at a time
};

}  // namespace ddpm
