#include "ddpm/ops/embedding.h"

#include <cmath>
#include <cstring>

#include "ddpm/core/check.h"

namespace ddpm {

// ---------------------------------------------------------------------------
// Sinusoidal timestep embedding (Ho et al. 2020, DDPM TF code get_timestep_embedding)

Tensor timestep_embedding(const std::vector<float>& t, int64_t dim) {
  DDPM_CHECK(dim >= 4 && dim % 2 == 0,
             "timestep_embedding: dim = " << dim << " must be even and >= 4 (half - 1 = dim/2 - 1 divides)");
  const int64_t N = static_cast<int64_t>(t.size()), half = dim / 2;
  Tensor out({N, dim});
  const double log_10000 = std::log(10000.0);
  for (int64_t i = 0; i < half; i++) {
    // freq_i = exp(-ln(10000) * i / (half - 1))
    const double freq = std::exp(-log_10000 * static_cast<double>(i) / static_cast<double>(half - 1));
    for (int64_t n = 0; n < N; n++) {
      const double arg = static_cast<double>(t[n]) * freq;
      out[n * dim + i] = static_cast<float>(std::sin(arg));         // out[n, i] = sin(t_n freq_i)
      out[n * dim + half + i] = static_cast<float>(std::cos(arg));  // out[n, half + i] = cos(t_n freq_i)
    }
  }
  return out;
}

// ---------------------------------------------------------------------------
// Lookup table: out[n, :] = table[ids[n], :]

void embedding_forward(float* out, const int64_t* ids, const float* table, int64_t N, int64_t dim) {
  for (int64_t n = 0; n < N; n++) std::memcpy(out + n * dim, table + ids[n] * dim, dim * sizeof(float));
}

void embedding_backward(float* dtable, const float* dout, const int64_t* ids, int64_t N, int64_t dim) {
  // dtable[ids[n], :] += dout[n, :]   (out[n, :] = table[ids[n], :]); n in order
  for (int64_t n = 0; n < N; n++) {
    float* row = dtable + ids[n] * dim;
    const float* d = dout + n * dim;
    for (int64_t j = 0; j < dim; j++) row[j] += d[j];
  }
}

Var embedding(Tape& tape, const std::vector<int64_t>& ids, const Var& table) {
  DDPM_CHECK(table->value.dim() == 2,
             "embedding: table " << table->value.shape_str() << " must be [num_classes, dim]");
  const int64_t num_classes = table->value.size(0), dim = table->value.size(1);
  const int64_t N = static_cast<int64_t>(ids.size());
  for (int64_t n = 0; n < N; n++)
    DDPM_CHECK(ids[n] >= 0 && ids[n] < num_classes, "embedding: ids[" << n << "] = " << ids[n] << " is outside [0, "
                                                                       << num_classes << ") for table "
                                                                       << table->value.shape_str());
  Tensor out({N, dim});
  embedding_forward(out.data(), ids.data(), table->value.data(), N, dim);
  return tape.record("embedding", out, {table}, [table, ids, N, dim](Node& o) {
    embedding_backward(table->grad_ref().data(), o.grad.data(), ids.data(), N, dim);
  });
}

}  // namespace ddpm
