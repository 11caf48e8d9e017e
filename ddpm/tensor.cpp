#include "ddpm/tensor.h"

#include <cstdlib>
#include <cstring>

#include "ddpm/check.h"

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

static std::shared_ptr<float> allocate(int64_t numel) {
  // 64-byte aligned (one cache line, one AVX-512 register); the size is rounded up so
  // aligned_alloc's contract holds, and at least one line so data() is never null.
  size_t bytes = static_cast<size_t>(numel) * sizeof(float);
  bytes = (bytes + 63) / 64 * 64;
  if (bytes == 0) bytes = 64;
  void* p = std::aligned_alloc(64, bytes);
  DDPM_CHECK(p != nullptr, "tensor: out of memory allocating " << bytes << " bytes");
  std::memset(p, 0, bytes);
  return std::shared_ptr<float>(static_cast<float*>(p), [](float* q) { std::free(q); });
}

Tensor::Tensor(const Shape& shape) : shape_(shape), numel_(numel_of(shape)), storage_(allocate(numel_)), defined_(true) {}

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
  Tensor t(shape_);
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

}  // namespace ddpm
