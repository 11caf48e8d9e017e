// tensor.h: the float32 tensor.
//
// Contiguous, at most 4 dimensions, in PyTorch order ([N, C, H, W] for images,
// [out, in] for linear weights, [C_out, C_in, kH, kW] for conv weights). No views and
// no strides. Storage is 64-byte aligned and shared on copy, as a torch.Tensor is:
// `Tensor b = a;` aliases a's data, and `a.clone()` makes a deep copy. Freed storage is
// cached by size and reused (see tensor.cpp), so a training loop that allocates the
// same shapes each step stops touching the operating system after its first step.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <memory>
#include <string>
#include <vector>

namespace ddpm {

using Shape = std::vector<int64_t>;

std::string to_string(const Shape& shape);  // "[2, 3, 28, 28]"
int64_t numel_of(const Shape& shape);       // checks 0 <= dims <= 4 and sizes >= 0

class Tensor {
 public:
  Tensor() = default;                  // undefined: defined() == false
  explicit Tensor(const Shape& shape);  // zero-filled

  static Tensor zeros(const Shape& shape) { return Tensor(shape); }
  // Uninitialized contents: for outputs that are written in full before being read.
  static Tensor empty(const Shape& shape);
  static Tensor full(const Shape& shape, float value);
  static Tensor from(const Shape& shape, const std::vector<float>& values);

  bool defined() const { return defined_; }
  const Shape& shape() const { return shape_; }
  int64_t dim() const { return static_cast<int64_t>(shape_.size()); }
  int64_t size(int64_t d) const;  // negative d counts from the end
  int64_t numel() const { return numel_; }
  float* data() { return storage_.get(); }
  const float* data() const { return storage_.get(); }
  float& operator[](int64_t i) { return storage_.get()[i]; }
  float operator[](int64_t i) const { return storage_.get()[i]; }
  std::string shape_str() const { return to_string(shape_); }

  Tensor clone() const;
  Tensor reshape(const Shape& shape) const;  // same storage, same numel
  void fill_(float value);
  void zero_() { fill_(0.0f); }
  void copy_(const Tensor& src);  // same numel; copies the values
  std::vector<float> to_vector() const;

 private:
  Shape shape_;
  int64_t numel_ = 0;
  std::shared_ptr<float> storage_;
  bool defined_ = false;
};

// The index of the first NaN or Inf in x, or -1 when every value is finite (the check
// every loader of weights or images makes before it trusts a file).
int64_t first_non_finite(const Tensor& x);

// Rows [first, first + count) of x [N, ...] (images of a batch) as a new tensor [count, ...].
Tensor rows(const Tensor& x, int64_t first, int64_t count);

}  // namespace ddpm
