// ops/embedding.h: the sinusoidal timestep embedding and a learned lookup table.
//
// timestep_embedding(t, dim): [N, dim] with half = dim / 2,
//   freq_i = exp(-ln(10000) * i / (half - 1)),  i = 0 .. half-1
//   out[n, i] = sin(t_n freq_i),  out[n, half + i] = cos(t_n freq_i)     ([sin | cos])
// as in the DDPM TF code (Ho et al. 2020, get_timestep_embedding). A plain function:
// it has no parameters and no gradient. dim must be even and >= 4 (half - 1 > 0).
// freq_i, the argument t_n freq_i and sin/cos are computed in double and rounded to
// float once. The references compute them in float32: there the argument (up to
// t = T ~ 1000 rad) carries ~1000 * 6e-8 = 6e-5 rad of rounding, so float32 references
// can differ from these values by up to ~1e-4; ours are correctly rounded, the same on
// every machine.
//
// embedding(ids, table): out[n, :] = table[ids[n], :]; table is [num_classes, dim],
// every id in [0, num_classes). Backward adds dout rows into the rows of dtable they
// came from (dtable[ids[n], :] += dout[n, :], n in order: repeated ids accumulate, and
// the result does not depend on the thread count). (PyTorch nn.Embedding)
#pragma once

#include <vector>

#include "ddpm/core/tape.h"

namespace ddpm {

Tensor timestep_embedding(const std::vector<float>& t, int64_t dim);

// N = ids.size() rows of dim values. Backward adds into dtable.
void embedding_forward(float* out, const int64_t* ids, const float* table, int64_t N, int64_t dim);
void embedding_backward(float* dtable, const float* dout, const int64_t* ids, int64_t N, int64_t dim);

Var embedding(Tape& tape, const std::vector<int64_t>& ids, const Var& table);

}  // namespace ddpm
