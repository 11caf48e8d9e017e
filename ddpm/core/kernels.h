// kernels.h: the numeric kernels every op is built from, each with a plain-loop twin.
//
// A kernel here works on raw pointers with explicit sizes: outputs first, then inputs,
// then sizes. Each optimized kernel `foo` has a `foo_ref` twin written as the plainest
// loop (accumulating in double where that makes a better oracle); tests compare them
// at awkward sizes. Kernels are free of threads unless their comment says otherwise.
#pragma once

#include <cstdint>

namespace ddpm {

// ---------------------------------------------------------------------------
// SGEMM, row-major:  C[M, N] = (accumulate ? C : 0) + op(A)[M, K] * op(B)[K, N]
//   op(A) = A        (A is [M, K], row stride lda)   when !trans_a
//   op(A) = A^T      (A is [K, M], row stride lda)   when trans_a
//   and likewise for B ([K, N] or [N, K], row stride ldb).
// Register-blocked (kernels.cpp explains the scheme): one operand is read in place or
// packed into MR-row panels, the other packed into NR-column panels, and a microkernel
// keeps an MR x NR tile of C in registers. Threads split C into blocks; each element's
// sum over K is one FMA chain in k order, so the result is bit-identical for any
// thread count. No heap allocation per call (thread-local scratch); small products
// (under 2 MFLOP) run on the caller's thread.
void sgemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, const float* A, int64_t lda,
           const float* B, int64_t ldb, float* C, int64_t ldc, bool accumulate);
void sgemm_ref(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, const float* A, int64_t lda,
               const float* B, int64_t ldb, float* C, int64_t ldc, bool accumulate);

// SGEMM on matrix views: C[M, N] = (accumulate ? C : 0) + A[M, K] B[K, N], where a view
// reads element (i, j) at data[row_offset(i) + col_offset(j)] with
//   row_offset(i) = row_offsets ? row_offsets[i] : i * row_stride   (and likewise for j).
// Offset tables let a GEMM read a matrix that is never built: ops/conv reads a padded
// image as its im2col matrix (row k = (c, i, j) starts at offset c*Hp*Wp + i*Wp + j).
// sgemm above is this with strided views; the blocking, the microkernel and the
// determinism (one FMA chain per C element in k order) are the same.
struct MatrixView {
  const float* data = nullptr;
  int64_t row_stride = 0, col_stride = 1;
  const int64_t* row_offsets = nullptr;  // [rows], or null: i * row_stride
  const int64_t* col_offsets = nullptr;  // [cols], or null: j * col_stride
  float at(int64_t i, int64_t j) const {
    return data[(row_offsets ? row_offsets[i] : i * row_stride) + (col_offsets ? col_offsets[j] : j * col_stride)];
  }
};
void sgemm_view(int64_t M, int64_t N, int64_t K, const MatrixView& A, const MatrixView& B, float* C, int64_t ldc,
                bool accumulate);
void sgemm_view_ref(int64_t M, int64_t N, int64_t K, const MatrixView& A, const MatrixView& B, float* C, int64_t ldc,
                    bool accumulate);

// Vector kernels, n elements each.
void axpy(float* y, float a, const float* x, int64_t n);      // y += a * x
void axpy_ref(float* y, float a, const float* x, int64_t n);
float dot(const float* x, const float* y, int64_t n);         // sum x * y (lane-split order)
double dot_ref(const float* x, const float* y, int64_t n);
float sum(const float* x, int64_t n);                          // sum x (lane-split order)
double sum_ref(const float* x, int64_t n);

}  // namespace ddpm
