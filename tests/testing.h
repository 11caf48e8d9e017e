// tests/testing.h: the helpers every test file uses.
//
//   check_allclose(name, got, want, n, atol, rtol)
//       |got - want| <= atol + rtol * |want| everywhere; on failure it prints the max
//       abs and rel differences and the first mismatching indices (as llm.c's
//       check_tensor does) and fails the doctest check.
//   gradcheck_twin(name, f, twin, inputs, tol)
//       The tape's backward of L = sum(f(inputs) * R), R fixed and random so every output
//       element matters, against central differences in double of f's double twin.
//   gradcheck(name, f, inputs, h, tol)
//       The same against central differences of f's float32 forward (no twin).
//   Both compare every gradient entry with its own tolerance, |g - fd| <= atol + rtol |fd|
//   (GradTol), not with the largest gradient, so a wrong small entry fails.
//   error_of(f)
//       The message of the ddpm::Error that f() throws, "" when it throws none.
#pragma once

#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <string>
#include <vector>

#include "ddpm/core/check.h"
#include "ddpm/core/rng.h"
#include "ddpm/core/tape.h"
#include "ddpm/core/tensor.h"

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
  CHECK_MESSAGE(allclose(name, got, want, n, atol, rtol), std::string(name));
}

inline void check_allclose(const char* name, const Tensor& got, const Tensor& want, double atol, double rtol) {
  REQUIRE_MESSAGE(got.shape() == want.shape(), std::string(name) << ": shape " << got.shape_str() << " vs " << want.shape_str());
  check_allclose(name, got.data(), want.data(), got.numel(), atol, rtol);
}

using OpFn = std::function<Var(Tape&, const std::vector<Var>&)>;

// A double-precision twin of an op's forward, on the inputs in the op's layout: fills
// out (already sized to the op's output) from in. The library's plain-loop *_ref twins,
// instantiated for double, or a few lines of loops in the test.
using TwinFn = std::function<void(std::vector<double>& out, const std::vector<std::vector<double>>& in)>;

// Each gradient entry g (the tape's, float32) must satisfy |g - fd| <= atol + rtol * |fd|,
// entry by entry, with fd its finite difference. Inputs and the projection R are ~N(0, 1),
// so a typical entry is O(1) (O(sqrt(fan-in)) for sums); atol only covers the float32
// rounding of an entry near zero, and is stated with its reason at each call.
struct GradTol {
  double atol;
  double rtol;
};

namespace detail {

// The analytic gradients: the tape's backward of L = sum(f(inputs) * R). R is random
// (fixed seed), so no output cancels another and each reaches the gradient with its own weight.
inline std::vector<Tensor> tape_gradients(const OpFn& f, const std::vector<Tensor>& inputs, Tensor* out_value,
                                          Tensor* R) {
  std::vector<Var> vars;
  for (auto& t : inputs) vars.push_back(variable(t.clone()));
  Tape tape;
  Var out = f(tape, vars);
  *R = randn(out->value.shape(), 777);
  *out_value = out->value.clone();
  tape.backward(out, *R);
  std::vector<Tensor> grads;
  for (size_t a = 0; a < inputs.size(); a++)
    grads.push_back(vars[a]->grad.defined() ? vars[a]->grad : Tensor(inputs[a].shape()));
  return grads;
}

// Compares one input's gradient entry by entry; prints the count, the first few bad
// entries and the typical (rms) entry. Returns the worst |g - fd| / (atol + rtol |fd|).
inline double compare_entries(const char* name, size_t a, const Tensor& g, const std::vector<double>& fd,
                              const GradTol& tol) {
  double worst = 0.0, rms = 0.0;
  int64_t bad = 0;
  for (int64_t i = 0; i < g.numel(); i++) {
    rms += fd[i] * fd[i];
    const double err = std::fabs(double(g[i]) - fd[i]) / (tol.atol + tol.rtol * std::fabs(fd[i]));
    if (!(err <= 1.0)) {
      if (bad < 5)
        std::printf("%s: input %zu entry %lld: analytic %.9g, finite difference %.9g (%.3g x tolerance)\n", name, a,
                    static_cast<long long>(i), double(g[i]), fd[i], err);
      bad++;
    }
    if (!(err <= worst)) worst = err;  // a NaN sticks
  }
  if (bad)
    std::printf("%s: input %zu: %lld of %lld entries outside atol %g + rtol %g * |fd| (rms entry %g)\n", name, a,
                static_cast<long long>(bad), static_cast<long long>(g.numel()), tol.atol, tol.rtol,
                std::sqrt(rms / double(std::max<int64_t>(1, g.numel()))));
  return worst;
}

// Fails the check when an entry is out of tolerance. DDPM_GRADCHECK_VERBOSE=1 prints
// every check's worst entry, to see the margin a tolerance leaves.
inline void report(const char* name, double worst) {
  if (std::getenv("DDPM_GRADCHECK_VERBOSE")) std::printf("%s: worst entry %.3g x its tolerance\n", name, worst);
  CHECK_MESSAGE(worst <= 1.0, std::string(name) << ": worst gradient entry is " << worst << " x its tolerance");
}

}  // namespace detail

// The best check: the tape's float32 backward of f against central differences, in
// double, of f's double-precision twin. It first checks that the twin is f's forward
// (within the same tolerance), so the differences are of the right function. In double,
// h = 1e-6 leaves a truncation error ~h^2 f''' ~ 1e-12 and a rounding error
// ~1e-16 |L| / h ~ 1e-9: the difference quotient is exact for float32 purposes, and the
// tolerance measures only the float32 rounding of the analytic gradient. Returns the
// worst entry's error in units of its tolerance (<= 1 passes).
inline double gradcheck_twin(const char* name, const OpFn& f, const TwinFn& twin, const std::vector<Tensor>& inputs,
                             GradTol tol, double h = 1e-6) {
  Tensor out, R;
  std::vector<Tensor> grads = detail::tape_gradients(f, inputs, &out, &R);
  std::vector<std::vector<double>> xs;
  for (auto& t : inputs) xs.emplace_back(t.data(), t.data() + t.numel());
  std::vector<double> y(out.numel());
  twin(y, xs);
  int64_t forward_bad = 0;
  for (int64_t i = 0; i < out.numel(); i++)
    if (!(std::fabs(double(out[i]) - y[i]) <= tol.atol + tol.rtol * std::fabs(y[i])) && forward_bad++ < 5)
      std::printf("%s: forward [%lld]: op %.9g, twin %.9g\n", name, static_cast<long long>(i), double(out[i]), y[i]);
  CHECK_MESSAGE(forward_bad == 0, std::string(name) << ": " << forward_bad << " forward entries differ from the double twin");
  auto loss = [&]() {
    twin(y, xs);
    double s = 0.0;
    for (int64_t i = 0; i < out.numel(); i++) s += y[i] * R[i];
    return s;
  };
  double worst = 0.0;
  for (size_t a = 0; a < inputs.size(); a++) {
    std::vector<double> fd(inputs[a].numel());
    for (int64_t i = 0; i < inputs[a].numel(); i++) {
      const double x0 = xs[a][i];
      xs[a][i] = x0 + h;
      const double lp = loss();
      xs[a][i] = x0 - h;
      const double lm = loss();
      xs[a][i] = x0;
      fd[i] = (lp - lm) / (2 * h);
    }
    worst = std::max(worst, detail::compare_entries(name, a, grads[a], fd, tol));
  }
  detail::report(name, worst);
  return worst;
}

// Where an op has no double twin (composites: modules, losses; ops linear in each
// input): central differences of the float32 forward. The denominator is the step
// actually taken, float(x0 + h) - float(x0 - h), not 2h (float rounding of x0 +- h
// would put a relative error ~1e-7 |x0| / h on every entry), and L is summed in double.
// What is left: the float32 rounding of the outputs the entry moves, ~1e-7 |out| / h
// each, and the truncation error h^2 f'''/6 (zero when f is linear or quadratic in the
// entry). Each call states its h and tolerance from these two terms.
inline double gradcheck(const char* name, const OpFn& f, const std::vector<Tensor>& inputs, double h, GradTol tol) {
  Tensor out, R;
  std::vector<Tensor> grads = detail::tape_gradients(f, inputs, &out, &R);
  std::vector<Var> xs;
  for (auto& t : inputs) xs.push_back(constant(t.clone()));
  auto loss = [&]() {
    Tape t = Tape::no_grad();
    Var o = f(t, xs);
    double s = 0.0;
    for (int64_t i = 0; i < o->value.numel(); i++) s += static_cast<double>(o->value[i]) * R[i];
    return s;
  };
  double worst = 0.0;
  for (size_t a = 0; a < inputs.size(); a++) {
    std::vector<double> fd(inputs[a].numel());
    for (int64_t i = 0; i < inputs[a].numel(); i++) {
      const float x0 = xs[a]->value[i], xp = static_cast<float>(x0 + h), xm = static_cast<float>(x0 - h);
      xs[a]->value[i] = xp;
      const double lp = loss();
      xs[a]->value[i] = xm;
      const double lm = loss();
      xs[a]->value[i] = x0;
      fd[i] = (lp - lm) / (double(xp) - double(xm));
    }
    worst = std::max(worst, detail::compare_entries(name, a, grads[a], fd, tol));
  }
  detail::report(name, worst);
  return worst;
}

template <typename F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

}  // namespace testing
}  // namespace ddpm
