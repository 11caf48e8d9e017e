// hash.h: FNV-1a, 64-bit, byte by byte: to tell whether two things hold the same bits
// (checkpoints in ./ckpt_hash, the dataset and the training state across MPI ranks). Not
// for security.
#pragma once

#include <cstddef>
#include <cstdint>

namespace ddpm {

struct Fnv1a {
  uint64_t h = 0xcbf29ce484222325ull;
  void add(const void* data, size_t n) {
    const uint8_t* p = static_cast<const uint8_t*>(data);
    for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 0x100000001b3ull;
  }
};

}  // namespace ddpm
