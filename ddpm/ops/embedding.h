// ops/embedding.h: the sinusoidal timestep embedding and a learned lookup table.
//
// timestep_embedding(t, dim): [N, dim] with half = dim / 2,
//   freq_i = exp(-ln(10000) * i / (half - 1)),  i = 0 .. half-1
//   out[n, i] = sin(t_n freq_i),  out[n, half + i] = cos(t_n freq_i)     ([sin | cos])
// as in the DDPM TF code (Ho et al. 2020, get_timestep_embedding). A plain function:
// it has no parameters and no gradient.
//
// embedding(ids, table): out[n, :] = table[ids[n], :]; table is [num_classes, dim].
// Backward adds dout rows into the rows of dtable they came from.
#pragma once

#include <vector>

#include "ddpm/tape.h"

namespace ddpm {

Tensor timestep_embedding(const std::vector<float>& t, int64_t dim);

Var embedding(Tape& tape, const std::vector<int64_t>& ids, const Var& table);

}  // namespace ddpm
