#include "ddpm/core/profile.h"

#include <atomic>
#include <mutex>

namespace ddpm {
namespace {

std::atomic<bool> enabled{false};
std::mutex mutex;
std::map<ProfileKey, ProfileTotal>& totals() {
  static auto* t = new std::map<ProfileKey, ProfileTotal>;  // never destroyed, like the buffer cache
  return *t;
}

}  // namespace

const char* profile_op_name(ProfileOp op) {
  switch (op) {
    case ProfileOp::conv_forward: return "conv_forward";
    case ProfileOp::conv_backward_data: return "conv_backward_data";
    case ProfileOp::conv_backward_weight: return "conv_backward_weight";
    case ProfileOp::group_norm: return "group_norm";
    case ProfileOp::silu: return "silu";
    case ProfileOp::attention: return "attention";
    case ProfileOp::elementwise: return "elementwise";
    case ProfileOp::linear: return "linear";
    case ProfileOp::adam: return "adam";
    case ProfileOp::count: break;
  }
  return "?";
}

void profile_enable(bool on) { enabled.store(on, std::memory_order_relaxed); }
bool profile_enabled() { return enabled.load(std::memory_order_relaxed); }

void profile_reset() {
  std::lock_guard<std::mutex> lock(mutex);
  totals().clear();
}

std::map<ProfileKey, ProfileTotal> profile_totals() {
  std::lock_guard<std::mutex> lock(mutex);
  return totals();
}

void ProfileScope::add(std::chrono::steady_clock::duration elapsed) const {
  std::lock_guard<std::mutex> lock(mutex);
  ProfileTotal& t = totals()[{op_, resolution_}];
  t.seconds += std::chrono::duration<double>(elapsed).count();
  t.flops += flops_;
  t.calls++;
}

}  // namespace ddpm
