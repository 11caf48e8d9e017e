#include "ddpm/core/tensor.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "ddpm/core/check.h"

namespace ddpm {

std::string to_string(const Shape& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); i++) {
    if (i) s += ", ";
    s += std::to_string(shape[i]);
  }
  return s + "]";
}

int64_t numel_of(const Shape& shape) {
  DDPM_CHECK(shape.size() <= 4, "tensor: at most 4 dimensions, got " << to_string(shape));
  int64_t n = 1;
  for (int64_t d : shape) {
    DDPM_CHECK(d >= 0, "tensor: negative size in shape " << to_string(shape));
    DDPM_CHECK(d == 0 || n <= (int64_t(1) << 40) / d, "tensor: shape " << to_string(shape) << " is too large");
    n *= d;
  }
  return n;
}

namespace {

// Freed buffers are kept by size and handed out again. A training step allocates the
// same shapes in the same order every time, so after the first step no memory comes
// from the operating system: no page faults and no zero-filling of fresh pages. The
// cache holds at most what was live at once, and is trimmed above kMaxCachedBytes.
class BufferCache {
 public:
  static constexpr size_t kMaxCachedBytes = size_t(8) << 30;

  float* get(size_t bytes) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      auto it = free_.find(bytes);
      if (it != free_.end() && !it->second.empty()) {
        float* p = it->second.back();
        it->second.pop_back();
        cached_ -= bytes;
        return p;
      }
    }
    void* p = std::aligned_alloc(64, bytes);
    DDPM_CHECK(p != nullptr, "tensor: out of memory allocating " << bytes << " bytes");
    return static_cast<float*>(p);
  }

  void put(float* p, size_t bytes) {
    std::lock_guard<std::mutex> lock(mutex_);
    if (cached_ + bytes > kMaxCachedBytes) {
      std::free(p);
      return;
    }
    free_[bytes].push_back(p);
    cached_ += bytes;
  }

 private:
  std::mutex mutex_;
  std::unordered_map<size_t, std::vector<float*>> free_;
  size_t cached_ = 0;
};

BufferCache& cache() {
  static BufferCache* c = new BufferCache;  // never destroyed: tensors may outlive main's statics
  return *c;
}

// 64-byte aligned (one cache line, one AVX-512 register); the size is rounded up so
// aligned_alloc's contract holds, and at least one line so data() is never null.
std::shared_ptr<float> allocate(int64_t numel, bool zero) {
  size_t bytes = static_cast<size_t>(numel) * sizeof(float);
  bytes = (bytes + 63) / 64 * 64;
  if (bytes == 0) bytes = 64;
  float* p = cache().get(bytes);
  if (zero) std::memset(p, 0, bytes);
  return std::shared_ptr<float>(p, [bytes](float* q) { cache().put(q, bytes); });
}

}  // namespace

Tensor::Tensor(const Shape& shape)
    : shape_(shape), numel_(numel_of(shape)), storage_(allocate(numel_, /*zero=*/true)), defined_(true) {}

Tensor Tensor::empty(const Shape& shape) {
  Tensor t;
  t.shape_ = shape;
  t.numel_ = numel_of(shape);
  t.storage_ = allocate(t.numel_, /*zero=*/false);
  t.defined_ = true;
  return t;
}

Tensor Tensor::full(const Shape& shape, float value) {
  Tensor t(shape);
  t.fill_(value);
  return t;
}

Tensor Tensor::from(const Shape& shape, const std::vector<float>& values) {
  Tensor t(shape);
  DDPM_CHECK(static_cast<int64_t>(values.size()) == t.numel(),
             "tensor: " << values.size() << " values for shape " << to_string(shape));
  std::memcpy(t.data(), values.data(), values.size() * sizeof(float));
  return t;
}

int64_t Tensor::size(int64_t d) const {
  int64_t n = dim();
  if (d < 0) d += n;
  DDPM_CHECK(d >= 0 && d < n, "tensor: no dimension " << d << " in shape " << shape_str());
  return shape_[d];
}

Tensor Tensor::clone() const {
  if (!defined_) return Tensor();
  Tensor t = empty(shape_);
  std::memcpy(t.data(), data(), numel_ * sizeof(float));
  return t;
}

Tensor Tensor::reshape(const Shape& shape) const {
  DDPM_CHECK(numel_of(shape) == numel_, "reshape: " << shape_str() << " to " << to_string(shape) << " changes numel");
  Tensor t = *this;
  t.shape_ = shape;
  return t;
}

void Tensor::fill_(float value) {
  float* p = data();
  for (int64_t i = 0; i < numel_; i++) p[i] = value;
}

void Tensor::copy_(const Tensor& src) {
  DDPM_CHECK(src.numel() == numel_, "copy_: " << src.shape_str() << " into " << shape_str());
  std::memcpy(data(), src.data(), numel_ * sizeof(float));
}

std::vector<float> Tensor::to_vector() const { return std::vector<float>(data(), data() + numel_); }

int64_t first_non_finite(const Tensor& x) {
  for (int64_t i = 0; i < x.numel(); i++)
    if (!std::isfinite(x[i])) return i;
  return -1;
}

Tensor rows(const Tensor& x, int64_t first, int64_t count) {
  DDPM_CHECK(x.defined() && x.dim() >= 1 && first >= 0 && count >= 0 && first + count <= x.size(0),
             "rows [" << first << ", " << first + count << ") of a tensor " << x.shape_str());
  Shape shape = x.shape();
  const int64_t D = x.size(0) > 0 ? x.numel() / x.size(0) : 0;
  shape[0] = count;
  Tensor out(shape);
  std::copy(x.data() + first * D, x.data() + (first + count) * D, out.data());
  return out;
}

}  // namespace ddpm
