// tests/testing.h: the helpers every test file uses.
//
//   check_allclose(name, got, want, n, atol, rtol)
//       |got - want| <= atol + rtol * |want| everywhere; on failure it prints the max
//       abs and rel differences and the first mismatching indices (as llm.c's
//       check_tensor does) and fails the doctest check.
//   gradcheck(f, inputs, ...)
//       Central finite differences against the tape. The loss is a random projection
//       L = sum(out * R) with a fixed R, so every output element matters. Returns the
//       worst error, normalized as |fd - analytic| / (max|analytic| + 1e-3).
#pragma once

#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <functional>
#include <string>
#include <vector>

#include "ddpm/rng.h"
#include "ddpm/tape.h"
#include "ddpm/tensor.h"

namespace ddpm {
namespace testing {

inline Tensor randn(const Shape& shape, uint64_t seed, float scale = 1.0f) {
  Tensor t(shape);
  fill_normal(t.data(), t.numel(), RngKey{seed, 12345});
  for (int64_t i = 0; i < t.numel(); i++) t[i] *= scale;
  return t;
}

inline bool allclose(const char* name, const float* got, const float* want, int64_t n, double atol, double rtol) {
  double max_abs = 0.0, max_rel = 0.0;
  int64_t bad = 0;
  std::vector<int64_t> first_bad;
  for (int64_t i = 0; i < n; i++) {
    double d = std::fabs(static_cast<double>(got[i]) - want[i]);
    bool ok = d <= atol + rtol * std::fabs(want[i]);
    if (std::isnan(got[i]) != std::isnan(want[i])) ok = false;
    max_abs = std::max(max_abs, d);
    if (want[i] != 0.0f) max_rel = std::max(max_rel, d / std::fabs(want[i]));
    if (!ok) {
      if (first_bad.size() < 5) first_bad.push_back(i);
      bad++;
    }
  }
  if (bad) {
    std::printf("%s: %lld of %lld mismatched (atol %g, rtol %g); max abs diff %g, max rel diff %g\n", name,
                static_cast<long long>(bad), static_cast<long long>(n), atol, rtol, max_abs, max_rel);
    for (int64_t i : first_bad)
      std::printf("  [%lld] got %.9g want %.9g\n", static_cast<long long>(i), got[i], want[i]);
  }
  return bad == 0;
}

inline void check_allclose(const char* name, const float* got, const float* want, int64_t n, double atol,
                           double rtol) {
  CHECK_MESSAGE(allclose(name, got, want, n, atol, rtol), name);
}

inline void check_allclose(const char* name, const Tensor& got, const Tensor& want, double atol, double rtol) {
  REQUIRE_MESSAGE(got.shape() == want.shape(), name << ": shape " << got.shape_str() << " vs " << want.shape_str());
  check_allclose(name, got.data(), want.data(), got.numel(), atol, rtol);
}

using OpFn = std::function<Var(Tape&, const std::vector<Var>&)>;

// Checks d(sum(f(inputs) * R))/d(input) for every input, every element, against central
// differences with step h. Forward runs in float32, so the difference quotient carries
// about 1e-7 * |L| / h of rounding error: h = 1e-2 and tol = 1e-2 (relative to the
// largest gradient) leave room for that and still catch any wrong term.
inline double gradcheck(const OpFn& f, std::vector<Tensor> inputs, double h = 1e-2, double tol = 1e-2,
                        const char* name = "gradcheck") {
  // Analytic gradients.
  std::vector<Var> vars;
  for (auto& t : inputs) vars.push_back(variable(t.clone()));
  Tape tape;
  Var out = f(tape, vars);
  Tensor R = randn(out->value.shape(), 777);
  tape.backward(out, R);

  auto loss = [&](std::vector<Var>& xs) {
    Tape t = Tape::no_grad();
    Var o = f(t, xs);
    double s = 0.0;
    for (int64_t i = 0; i < o->value.numel(); i++) s += static_cast<double>(o->value[i]) * R[i];
    return s;
  };

  double worst = 0.0;
  for (size_t a = 0; a < inputs.size(); a++) {
    std::vector<Var> xs;
    for (auto& t : inputs) xs.push_back(constant(t.clone()));
    Tensor analytic = vars[a]->grad.defined() ? vars[a]->grad : Tensor(inputs[a].shape());
    double scale = 1e-3;
    for (int64_t i = 0; i < analytic.numel(); i++) scale = std::max(scale, std::fabs(double(analytic[i])));
    for (int64_t i = 0; i < inputs[a].numel(); i++) {
      float x0 = xs[a]->value[i];
      xs[a]->value[i] = static_cast<float>(x0 + h);
      double lp = loss(xs);
      xs[a]->value[i] = static_cast<float>(x0 - h);
      double lm = loss(xs);
      xs[a]->value[i] = x0;
      double fd = (lp - lm) / (2 * h);
      double err = std::fabs(fd - analytic[i]) / scale;
      if (err > tol && err > worst)
        std::printf("%s: input %zu element %lld: finite difference %.6g, analytic %.6g\n", name, a,
                    static_cast<long long>(i), fd, double(analytic[i]));
      worst = std::max(worst, err);
    }
  }
  CHECK_MESSAGE(worst <= tol, name << ": worst normalized gradient error " << worst << " > " << tol);
  return worst;
}

}  // namespace testing
}  // namespace ddpm
