#include "ddpm/core/check.h"
#include "ddpm/ops/elementwise.h"
#include "ddpm/core/tape.h"
#include "tests/testing.h"

using namespace ddpm;

TEST_CASE("tape: backward walks in reverse creation order and gradients accumulate") {
  Tape tape;
  Var x = variable(Tensor::from({3}, {1, 2, 3}));
  Var y = mul(tape, x, x);   // x^2
  Var z = add(tape, y, x);   // x^2 + x  (x used twice: its grads must add)
  Var loss = sum(tape, z);
  CHECK(tape.size() == 3);
  tape.backward(loss);
  for (int i = 0; i < 3; i++) CHECK(x->grad[i] == doctest::Approx(2 * x->value[i] + 1));
  // A second backward on a fresh tape adds on top.
  Tape tape2;
  tape2.backward(sum(tape2, x));
  for (int i = 0; i < 3; i++) CHECK(x->grad[i] == doctest::Approx(2 * x->value[i] + 2));
}

TEST_CASE("tape: no_grad records nothing, constants get no grad, non-scalar backward throws") {
  Var x = variable(Tensor::from({2}, {1, 2}));
  Tape off = Tape::no_grad();
  Var y = silu(off, x);
  CHECK(off.size() == 0);
  CHECK_FALSE(y->requires_grad);
  CHECK_THROWS_AS(off.backward(sum(off, y)), Error);

  Tape tape;
  Var c = constant(Tensor::from({2}, {3, 4}));
  Var z = mul(tape, x, c);
  CHECK(z->requires_grad);
  CHECK_THROWS_AS(tape.backward(z), Error);  // two elements
  tape.backward(sum(tape, z));
  CHECK_FALSE(c->grad.defined());
  CHECK(x->grad[1] == 4.0f);
}

TEST_CASE("tape: parameters keep grads across tapes until zero_grad; first_nonfinite names the op") {
  Parameter p = make_parameter("w", Tensor::from({2}, {1, -1}));
  CHECK(p.var->grad.defined());
  for (int step = 0; step < 2; step++) {
    Tape tape;
    tape.backward(sum(tape, scale(tape, p.var, 3.0f)));
  }
  CHECK(p.var->grad[0] == 6.0f);
  zero_grad({&p});
  CHECK(p.var->grad[0] == 0.0f);

  Tape tape;
  Var a = scale(tape, p.var, 2.0f);
  CHECK(tape.first_nonfinite() == "");
  Var b = mul(tape, a, constant(Tensor::from({2}, {INFINITY, 1})));
  sum(tape, b);
  CHECK(tape.first_nonfinite() == "op #1 (mul) output [2]");
}
