#include "ddpm/core/tape.h"

#include <cmath>

#include "ddpm/core/check.h"

namespace ddpm {

Var constant(Tensor value) {
  auto n = std::make_shared<Node>();
  n->value = std::move(value);
  return n;
}

Var variable(Tensor value) {
  auto n = std::make_shared<Node>();
  n->value = std::move(value);
  n->requires_grad = true;
  return n;
}

Var Tape::record(const char* op, Tensor out, std::initializer_list<Var> inputs,
                 std::function<void(Node& out)> backward) {
  auto node = std::make_shared<Node>();
  node->value = std::move(out);
  if (recording_) {
    for (const Var& in : inputs) {
      if (in && in->requires_grad) {
        node->requires_grad = true;
        break;
      }
    }
  }
  if (node->requires_grad) entries_.push_back(Entry{op, node, std::move(backward)});
  return node;
}

void Tape::backward(const Var& loss) {
  DDPM_CHECK(loss->value.numel() == 1, "backward: the loss must have one element, got shape "
                                           << loss->value.shape_str()
                                           << " (reduce it with mean or sum, or pass an upstream gradient)");
  backward(loss, Tensor::full(loss->value.shape(), 1.0f));
}

void Tape::backward(const Var& out, const Tensor& upstream) {
  DDPM_CHECK(recording_, "backward: this tape was made with Tape::no_grad() and recorded nothing");
  DDPM_CHECK(out->requires_grad, "backward: the output does not depend on anything that needs a gradient");
  DDPM_CHECK(upstream.shape() == out->value.shape(),
             "backward: upstream gradient " << upstream.shape_str() << " for output " << out->value.shape_str());
  Tensor& g = out->grad_ref();
  for (int64_t i = 0; i < g.numel(); i++) g[i] += upstream[i];
  first_nonfinite_grad_.clear();
  for (auto it = entries_.rbegin(); it != entries_.rend(); ++it) {
    if (!it->out->grad.defined()) continue;  // no gradient flowed into this op's output
    const Tensor& og = it->out->grad;
    if (first_nonfinite_grad_.empty()) {
      for (int64_t i = 0; i < og.numel(); i++) {
        if (!std::isfinite(og[i])) {
          const size_t k = static_cast<size_t>(entries_.rend() - it) - 1;
          first_nonfinite_grad_ = "op #" + std::to_string(k) + " (" + it->op + ") output " + og.shape_str();
          break;
        }
      }
    }
    it->backward(*it->out);
    // Every op that reads this output was recorded later and has run: its gradient is
    // used up. Freeing it now (back to the buffer cache, for the next grad_ref) keeps
    // only the gradients in flight alive, not one per activation.
    it->out->grad = Tensor();
  }
}

std::string Tape::first_nonfinite() const {
  for (size_t k = 0; k < entries_.size(); k++) {
    const Tensor& v = entries_[k].out->value;
    for (int64_t i = 0; i < v.numel(); i++) {
      if (!std::isfinite(v[i]))
        return "op #" + std::to_string(k) + " (" + entries_[k].op + ") output " + v.shape_str();
    }
  }
  return "";
}

Parameter make_parameter(std::string name, Tensor value) {
  Parameter p{std::move(name), variable(std::move(value))};
  p.var->grad_ref();
  return p;
}

void zero_grad(const std::vector<Parameter*>& params) {
  for (Parameter* p : params) p->var->grad_ref().zero_();
}

}  // namespace ddpm
