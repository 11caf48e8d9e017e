// simd.h: the only file in ddpm that uses intrinsics.
//
// One target is chosen at compile time, highest first:
//   AVX-512 (__AVX512F__), AVX2+FMA (__AVX2__ && __FMA__), NEON (__ARM_NEON), scalar.
// Defining DDPM_SIMD_SCALAR (make SIMD=scalar) forces the scalar target, which is
// always buildable and is what the plain-loop twins are checked against.
//
// Kernels use these verbs on `Vec` and never touch intrinsics themselves:
//   zero(), set1(x), load(p), store(p, v)      (unaligned loads and stores)
//   add, sub, mul, max, mul_add(a, b, c) = a*b + c (fused where the target has FMA)
//   reduce_sum(v)                               (the sum of the lanes, fixed order)
// and the constants kLanes and kTarget.
#pragma once

#if defined(DDPM_SIMD_SCALAR)
#define DDPM_SIMD_TARGET_SCALAR 1
#elif defined(__AVX512F__)
#define DDPM_SIMD_TARGET_AVX512 1
#include <immintrin.h>
#elif defined(__AVX2__) && defined(__FMA__)
#define DDPM_SIMD_TARGET_AVX2 1
#include <immintrin.h>
#elif defined(__ARM_NEON)
#define DDPM_SIMD_TARGET_NEON 1
#include <arm_neon.h>
#else
#define DDPM_SIMD_TARGET_SCALAR 1
#endif

#include <cmath>

namespace ddpm {
namespace simd {

#if defined(DDPM_SIMD_TARGET_AVX512)

constexpr int kLanes = 16;
constexpr const char* kTarget = "avx512";
struct Vec { __m512 v; };
inline Vec zero() { return {_mm512_setzero_ps()}; }
inline Vec set1(float x) { return {_mm512_set1_ps(x)}; }
inline Vec load(const float* p) { return {_mm512_loadu_ps(p)}; }
inline void store(float* p, Vec a) { _mm512_storeu_ps(p, a.v); }
inline Vec add(Vec a, Vec b) { return {_mm512_add_ps(a.v, b.v)}; }
inline Vec sub(Vec a, Vec b) { return {_mm512_sub_ps(a.v, b.v)}; }
inline Vec mul(Vec a, Vec b) { return {_mm512_mul_ps(a.v, b.v)}; }
inline Vec max(Vec a, Vec b) { return {_mm512_max_ps(a.v, b.v)}; }
inline Vec mul_add(Vec a, Vec b, Vec c) { return {_mm512_fmadd_ps(a.v, b.v, c.v)}; }
inline float reduce_sum(Vec a) {
  // Pairwise halving in a fixed order: 512 -> 256 -> 128 -> scalar.
  __m256 lo = _mm512_castps512_ps256(a.v);
  __m256 hi = _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(a.v), 1));
  __m256 s8 = _mm256_add_ps(lo, hi);
  __m128 s4 = _mm_add_ps(_mm256_castps256_ps128(s8), _mm256_extractf128_ps(s8, 1));
  __m128 s2 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));
  __m128 s1 = _mm_add_ss(s2, _mm_shuffle_ps(s2, s2, 1));
  return _mm_cvtss_f32(s1);
}

#elif defined(DDPM_SIMD_TARGET_AVX2)

constexpr int kLanes = 8;
constexpr const char* kTarget = "avx2";
struct Vec { __m256 v; };
inline Vec zero() { return {_mm256_setzero_ps()}; }
inline Vec set1(float x) { return {_mm256_set1_ps(x)}; }
inline Vec load(const float* p) { return {_mm256_loadu_ps(p)}; }
inline void store(float* p, Vec a) { _mm256_storeu_ps(p, a.v); }
inline Vec add(Vec a, Vec b) { return {_mm256_add_ps(a.v, b.v)}; }
inline Vec sub(Vec a, Vec b) { return {_mm256_sub_ps(a.v, b.v)}; }
inline Vec mul(Vec a, Vec b) { return {_mm256_mul_ps(a.v, b.v)}; }
inline Vec max(Vec a, Vec b) { return {_mm256_max_ps(a.v, b.v)}; }
inline Vec mul_add(Vec a, Vec b, Vec c) { return {_mm256_fmadd_ps(a.v, b.v, c.v)}; }
inline float reduce_sum(Vec a) {
  __m128 s4 = _mm_add_ps(_mm256_castps256_ps128(a.v), _mm256_extractf128_ps(a.v, 1));
  __m128 s2 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));
  __m128 s1 = _mm_add_ss(s2, _mm_shuffle_ps(s2, s2, 1));
  return _mm_cvtss_f32(s1);
}

#elif defined(DDPM_SIMD_TARGET_NEON)

constexpr int kLanes = 4;
constexpr const char* kTarget = "neon";
struct Vec { float32x4_t v; };
inline Vec zero() { return {vdupq_n_f32(0.0f)}; }
inline Vec set1(float x) { return {vdupq_n_f32(x)}; }
inline Vec load(const float* p) { return {vld1q_f32(p)}; }
inline void store(float* p, Vec a) { vst1q_f32(p, a.v); }
inline Vec add(Vec a, Vec b) { return {vaddq_f32(a.v, b.v)}; }
inline Vec sub(Vec a, Vec b) { return {vsubq_f32(a.v, b.v)}; }
inline Vec mul(Vec a, Vec b) { return {vmulq_f32(a.v, b.v)}; }
inline Vec max(Vec a, Vec b) { return {vmaxq_f32(a.v, b.v)}; }
inline Vec mul_add(Vec a, Vec b, Vec c) { return {vfmaq_f32(c.v, a.v, b.v)}; }
inline float reduce_sum(Vec a) {
  float32x2_t s2 = vadd_f32(vget_low_f32(a.v), vget_high_f32(a.v));
  return vget_lane_f32(s2, 0) + vget_lane_f32(s2, 1);
}

#else  // scalar

constexpr int kLanes = 1;
constexpr const char* kTarget = "scalar";
struct Vec { float v; };
inline Vec zero() { return {0.0f}; }
inline Vec set1(float x) { return {x}; }
inline Vec load(const float* p) { return {*p}; }
inline void store(float* p, Vec a) { *p = a.v; }
inline Vec add(Vec a, Vec b) { return {a.v + b.v}; }
inline Vec sub(Vec a, Vec b) { return {a.v - b.v}; }
inline Vec mul(Vec a, Vec b) { return {a.v * b.v}; }
inline Vec max(Vec a, Vec b) { return {a.v > b.v ? a.v : b.v}; }
inline Vec mul_add(Vec a, Vec b, Vec c) { return {std::fma(a.v, b.v, c.v)}; }
inline float reduce_sum(Vec a) { return a.v; }

#endif

}  // namespace simd
}  // namespace ddpm
