// tape.h: reverse-mode automatic differentiation on an explicit tape.
//
// A Var is a shared handle to a Node: a value, its gradient, and whether it needs one.
// An op computes its output and, in the same function, records on the Tape a closure
// that adds the output's gradient into its inputs' gradients. The tape is a list in
// creation order; backward walks it in reverse, with no graph search (as Stan Math
// and flashlight do). There is no global tape: every op takes the Tape it records on.
//
//   Tape tape;                         // records
//   Var y = silu(tape, x);             // forward now; backward recorded
//   Var loss = mean(tape, y);
//   tape.backward(loss);               // loss must have one element
//
//   Tape sampling = Tape::no_grad();   // records nothing; every output has no grad
//
// Gradients accumulate (+=) into Node::grad. Parameters are Vars that live outside any
// tape (see Parameter); their grads persist across steps until zero_grad. The grads of
// op outputs are freed by backward as soon as they are used up (as PyTorch keeps no
// .grad on non-leaf tensors): after backward, only leaves (variables, parameters) hold
// gradients.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "ddpm/core/tensor.h"

namespace ddpm {

struct Node {
  Tensor value;
  Tensor grad;  // undefined until a gradient reaches this node
  bool requires_grad = false;

  // The gradient buffer, allocated as zeros on first use.
  Tensor& grad_ref() {
    if (!grad.defined()) grad = Tensor(value.shape());
    return grad;
  }
};
using Var = std::shared_ptr<Node>;

Var constant(Tensor value);  // needs no grad
Var variable(Tensor value);  // a leaf that needs a grad (tests, inputs we differentiate)

class Tape {
 public:
  Tape() = default;
  static Tape no_grad() {
    Tape t;
    t.recording_ = false;
    return t;
  }

  bool recording() const { return recording_; }

  // Called by ops: wraps `out` in a Var. If the tape records and any input needs a
  // grad, the Var needs one too and `backward(out_node)` is recorded under `op`.
  Var record(const char* op, Tensor out, std::initializer_list<Var> inputs, std::function<void(Node& out)> backward);

  // Seeds d(loss)/d(loss) = 1 and runs every recorded closure in reverse order.
  // loss must have exactly one element.
  void backward(const Var& loss);
  // The same with an explicit upstream gradient for a non-scalar output (gradient
  // checks and reference fixtures use this).
  void backward(const Var& out, const Tensor& upstream);

  size_t size() const { return entries_.size(); }

  // The first recorded op (creation order) whose output has a NaN or Inf, as
  // "op #k (name) output [shape]", or "" if all are finite. Used to report where a
  // non-finite loss came from.
  std::string first_nonfinite() const;
  // After backward: the first op in backward order (reverse creation order) whose
  // output's gradient has a NaN or Inf, in the same format, or "". The op recorded
  // just after it (which consumed its output) produced the bad gradient. Backward
  // notes it as it goes, since it frees each output's gradient once used.
  std::string first_nonfinite_grad() const { return first_nonfinite_grad_; }

 private:
  struct Entry {
    const char* op;
    Var out;
    std::function<void(Node&)> backward;
  };
  std::vector<Entry> entries_;
  bool recording_ = true;
  std::string first_nonfinite_grad_;
};

// A named trainable tensor. The name mirrors the module tree
// ("down.0.blocks.0.norm1.weight") and is what checkpoints store.
struct Parameter {
  std::string name;
  Var var;  // requires_grad, grad allocated up front
};

Parameter make_parameter(std::string name, Tensor value);
void zero_grad(const std::vector<Parameter*>& params);

}  // namespace ddpm
