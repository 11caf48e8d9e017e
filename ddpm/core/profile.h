// profile.h: optional per-op wall-time totals, for ./bench's per-op breakdown.
//
// Off by default. An op wraps its kernel call in a scope timer:
//
//   ProfileScope timer(ProfileOp::conv_forward, flops, H);   // flops of this call, image side
//   conv2d_forward(...);
//
// When profiling is off (the normal case) the timer reads one atomic flag and does
// nothing else. When on (profile_enable(true), bench only), it adds the call's wall time
// and flops to a total keyed by (op, resolution). Scopes are meant for the calling thread
// of an op; the work the op hands to parallel_for is inside its time. Scopes do not nest:
// time spent in a GEMM called by an op belongs to that op.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <utility>

namespace ddpm {

enum class ProfileOp {
  conv_forward,
  conv_backward_data,
  conv_backward_weight,  // with the bias gradient
  group_norm,            // forward and backward, also of the fused GroupNorm+SiLU
  silu,                  // forward and backward (SiLU on its own)
  attention,             // forward and backward (the q, k, v and output convs are conv_*)
  elementwise,           // add, mul, scale, concat, upsample, dropout: forward and backward
  linear,                // the time-embedding MLP and temb_proj
  adam,                  // the optimizer step
  count
};
const char* profile_op_name(ProfileOp op);  // "conv_forward", ...

struct ProfileTotal {
  double seconds = 0.0;
  double flops = 0.0;  // as passed by the scopes (0 for ops that are not counted in flops)
  int64_t calls = 0;
};
using ProfileKey = std::pair<ProfileOp, int64_t>;  // (op, resolution: the image side, or 0)

void profile_enable(bool on);
bool profile_enabled();
void profile_reset();
std::map<ProfileKey, ProfileTotal> profile_totals();

class ProfileScope {
 public:
  explicit ProfileScope(ProfileOp op, double flops = 0.0, int64_t resolution = 0)
      : on_(profile_enabled()), op_(op), resolution_(resolution), flops_(flops) {
    if (on_) start_ = std::chrono::steady_clock::now();
  }
  ~ProfileScope() {
    if (on_) add(std::chrono::steady_clock::now() - start_);
  }
  ProfileScope(const ProfileScope&) = delete;
  ProfileScope& operator=(const ProfileScope&) = delete;

 private:
  void add(std::chrono::steady_clock::duration elapsed) const;
  bool on_;
  ProfileOp op_;
  int64_t resolution_;
  double flops_;
  std::chrono::steady_clock::time_point start_;
};

}  // namespace ddpm
