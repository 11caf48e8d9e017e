// ops/dropout.h: inverted dropout, seeded.   (PyTorch nn.Dropout in training mode)
//
//   keep[i] = uniform(key, i) >= p;   out[i] = keep[i] ? x[i] / (1 - p) : 0
// The mask is a pure function of (key, element index), so it does not depend on the
// thread count. With p == 0 or training == false the op is the identity.
// Caches nothing: backward recomputes the mask from the key.
#pragma once

#include "ddpm/rng.h"
#include "ddpm/tape.h"

namespace ddpm {

Var dropout(Tape& tape, const Var& x, float p, RngKey key, bool training);

}  // namespace ddpm
