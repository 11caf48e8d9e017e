// simd.h: the only file in ddpm that uses intrinsics.
//
// One target is chosen at compile time, highest first:
//   AVX-512 (__AVX512F__), AVX2+FMA (__AVX2__ && __FMA__), NEON (__ARM_NEON), scalar.
// Defining DDPM_SIMD_SCALAR (make SIMD=scalar) forces the scalar target, which is
// always buildable and is what the plain-loop twins are checked against.
//
// Kernels use these verbs on `Vec` and never touch intrinsics themselves:
//   zero(), set1(x), load(p), store(p, v)      (unaligned loads and stores)
//   load_first(p, n), store_first(p, v, n)      (lanes [0, n) only, 0 <= n <= kLanes: tails;
//                                                load_first's other lanes are 0, and neither
//                                                touches memory past p + n)
//   broadcast(p) = set1(*p)                     (one float from memory into every lane)
//   add, sub, mul, div, min, max, mul_add(a, b, c) = a*b + c (fused where the target has FMA)
//   reduce_sum(v)                               (the sum of the lanes, fixed order)
//   exp(v), silu(v)                             (see their comments for the accuracy)
//   prefetch(p)                                 (a hint: bring p's cache line towards L1)
// and the constants kLanes and kTarget. Target-private helpers used only to build
// verbs here (round_nearest, scale_pow2, first_lanes) are not for kernels.
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
inline Vec broadcast(const float* p) { return {_mm512_set1_ps(*p)}; }
inline void store(float* p, Vec a) { _mm512_storeu_ps(p, a.v); }
inline __mmask16 first_lanes(int n) { return static_cast<__mmask16>((1u << n) - 1u); }
inline Vec load_first(const float* p, int n) { return {_mm512_maskz_loadu_ps(first_lanes(n), p)}; }
inline void store_first(float* p, Vec a, int n) { _mm512_mask_storeu_ps(p, first_lanes(n), a.v); }
inline Vec add(Vec a, Vec b) { return {_mm512_add_ps(a.v, b.v)}; }
inline Vec sub(Vec a, Vec b) { return {_mm512_sub_ps(a.v, b.v)}; }
inline Vec mul(Vec a, Vec b) { return {_mm512_mul_ps(a.v, b.v)}; }
inline Vec div(Vec a, Vec b) { return {_mm512_div_ps(a.v, b.v)}; }
// min, max, round_nearest and scale_pow2 use the all-lanes-masked forms: the plain
// ones trip GCC 12's -Wmaybe-uninitialized on _mm512_undefined_ps (GCC PR 105593).
constexpr __mmask16 kAll = 0xFFFF;
inline Vec min(Vec a, Vec b) { return {_mm512_mask_min_ps(a.v, kAll, a.v, b.v)}; }
inline Vec max(Vec a, Vec b) { return {_mm512_mask_max_ps(a.v, kAll, a.v, b.v)}; }
inline Vec round_nearest(Vec a) {
  return {_mm512_mask_roundscale_ps(a.v, kAll, a.v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)};
}
inline Vec scale_pow2(Vec a, Vec n) { return {_mm512_mask_scalef_ps(a.v, kAll, a.v, n.v)}; }  // a * 2^n, n integral
inline Vec mul_add(Vec a, Vec b, Vec c) { return {_mm512_fmadd_ps(a.v, b.v, c.v)}; }
inline float reduce_sum(Vec a) {
  // Pairwise halving in a fixed order: lane i + lane i+8, then i+4, i+2, i+1. Done in
  // memory: GCC 12's 512-bit shuffles and casts trip -Wuninitialized (GCC PR 105593).
  alignas(64) float t[16];
  _mm512_store_ps(t, a.v);
  for (int half = 8; half >= 1; half /= 2)
    for (int i = 0; i < half; i++) t[i] += t[i + half];
  return t[0];
}

#elif defined(DDPM_SIMD_TARGET_AVX2)

constexpr int kLanes = 8;
constexpr const char* kTarget = "avx2";
struct Vec { __m256 v; };
inline Vec zero() { return {_mm256_setzero_ps()}; }
inline Vec set1(float x) { return {_mm256_set1_ps(x)}; }
inline Vec load(const float* p) { return {_mm256_loadu_ps(p)}; }
inline Vec broadcast(const float* p) { return {_mm256_broadcast_ss(p)}; }
inline void store(float* p, Vec a) { _mm256_storeu_ps(p, a.v); }
inline __m256i first_lanes(int n) { return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7)); }
inline Vec load_first(const float* p, int n) { return {_mm256_maskload_ps(p, first_lanes(n))}; }
inline void store_first(float* p, Vec a, int n) { _mm256_maskstore_ps(p, first_lanes(n), a.v); }
inline Vec add(Vec a, Vec b) { return {_mm256_add_ps(a.v, b.v)}; }
inline Vec sub(Vec a, Vec b) { return {_mm256_sub_ps(a.v, b.v)}; }
inline Vec mul(Vec a, Vec b) { return {_mm256_mul_ps(a.v, b.v)}; }
inline Vec div(Vec a, Vec b) { return {_mm256_div_ps(a.v, b.v)}; }
inline Vec min(Vec a, Vec b) { return {_mm256_min_ps(a.v, b.v)}; }
inline Vec max(Vec a, Vec b) { return {_mm256_max_ps(a.v, b.v)}; }
inline Vec round_nearest(Vec a) { return {_mm256_round_ps(a.v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)}; }
inline Vec scale_pow2(Vec a, Vec n) {  // a * 2^n for integral n in [-126, 127]: build 2^n's exponent bits
  __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n.v), _mm256_set1_epi32(127)), 23);
  return {_mm256_mul_ps(a.v, _mm256_castsi256_ps(e))};
}
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
inline Vec broadcast(const float* p) { return {vld1q_dup_f32(p)}; }
inline void store(float* p, Vec a) { vst1q_f32(p, a.v); }
inline Vec load_first(const float* p, int n) {  // through a zeroed copy: NEON has no masked loads
  float t[4] = {0.0f, 0.0f, 0.0f, 0.0f};
  for (int i = 0; i < n; i++) t[i] = p[i];
  return {vld1q_f32(t)};
}
inline void store_first(float* p, Vec a, int n) {
  float t[4];
  vst1q_f32(t, a.v);
  for (int i = 0; i < n; i++) p[i] = t[i];
}
inline Vec add(Vec a, Vec b) { return {vaddq_f32(a.v, b.v)}; }
inline Vec sub(Vec a, Vec b) { return {vsubq_f32(a.v, b.v)}; }
inline Vec mul(Vec a, Vec b) { return {vmulq_f32(a.v, b.v)}; }
inline Vec div(Vec a, Vec b) { return {vdivq_f32(a.v, b.v)}; }
inline Vec min(Vec a, Vec b) { return {vminq_f32(a.v, b.v)}; }
inline Vec max(Vec a, Vec b) { return {vmaxq_f32(a.v, b.v)}; }
inline Vec round_nearest(Vec a) { return {vrndnq_f32(a.v)}; }
inline Vec scale_pow2(Vec a, Vec n) {  // a * 2^n for integral n in [-126, 127]: build 2^n's exponent bits
  int32x4_t e = vshlq_n_s32(vaddq_s32(vcvtnq_s32_f32(n.v), vdupq_n_s32(127)), 23);
  return {vmulq_f32(a.v, vreinterpretq_f32_s32(e))};
}
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
inline Vec broadcast(const float* p) { return {*p}; }
inline void store(float* p, Vec a) { *p = a.v; }
inline Vec load_first(const float* p, int n) { return {n > 0 ? *p : 0.0f}; }
inline void store_first(float* p, Vec a, int n) {
  if (n > 0) *p = a.v;
}
inline Vec add(Vec a, Vec b) { return {a.v + b.v}; }
inline Vec sub(Vec a, Vec b) { return {a.v - b.v}; }
inline Vec mul(Vec a, Vec b) { return {a.v * b.v}; }
inline Vec div(Vec a, Vec b) { return {a.v / b.v}; }
inline Vec min(Vec a, Vec b) { return {a.v < b.v ? a.v : b.v}; }
inline Vec max(Vec a, Vec b) { return {a.v > b.v ? a.v : b.v}; }
inline Vec round_nearest(Vec a) { return {std::nearbyint(a.v)}; }
inline Vec scale_pow2(Vec a, Vec n) { return {std::ldexp(a.v, static_cast<int>(n.v))}; }
inline Vec mul_add(Vec a, Vec b, Vec c) { return {std::fma(a.v, b.v, c.v)}; }
inline float reduce_sum(Vec a) { return a.v; }

#endif

inline void prefetch(const void* p) { __builtin_prefetch(p); }

// exp(x) in float, the Cephes expf scheme, the same operations on every target:
// n = round(x / ln 2), r = x - n ln 2 in two parts (Cody-Waite), then e^r by a
// degree-7 polynomial, times 2^n. Relative error below 2e-7 for x in [-87.33, 88.37]
// (measured max 1.19e-7, about 1 ulp; tests/core/test_kernels.cpp checks it against
// double exp).
// Outside that range x is clamped first: exp returns about 1.2e-38 for x < -87.33
// (not denormals or 0) and about 2.4e38 for x > 88.37 (not inf). NaN in gives an
// unspecified finite or NaN value.
inline Vec exp(Vec x) {
  x = min(max(x, set1(-87.3365402f)), set1(88.3762589f));
  Vec n = round_nearest(mul(x, set1(1.44269504088896341f)));  // x / ln 2
  Vec r = mul_add(n, set1(-0.693359375f), x);                  // x - n ln2_hi (exact)
  r = mul_add(n, set1(2.12194440e-4f), r);                     // - n ln2_lo
  Vec p = set1(1.9875691500e-4f);
  p = mul_add(p, r, set1(1.3981999507e-3f));
  p = mul_add(p, r, set1(8.3334519073e-3f));
  p = mul_add(p, r, set1(4.1665795894e-2f));
  p = mul_add(p, r, set1(1.6666665459e-1f));
  p = mul_add(p, r, set1(5.0000001201e-1f));
  p = mul_add(p, mul(r, r), add(r, set1(1.0f)));  // e^r = 1 + r + r^2 p(r)
  return scale_pow2(p, n);
}

// silu(x) = x * sigmoid(x) = x / (1 + exp(-x)), with exp above and a true divide (as
// ggml's ggml_v_silu sits beside its exp): SiLU's forward everywhere it runs, so the
// tape's op and the fused inference passes give the same bits.
inline Vec silu(Vec x) { return div(x, add(set1(1.0f), exp(sub(zero(), x)))); }

}  // namespace simd
}  // namespace ddpm
