// ckpt_hash: check training checkpoints and print a hash of their contents.
//
//   ./ckpt_hash out/ckpt-00000100.safetensors [more files]
//   3f2a9c0d1e7b5a44  step 100  out/ckpt-00000100.safetensors
//
// Each file is checked by the trainer's own function, validate_checkpoint (ddpm/train/trainer.h): the
// format tag and version, both configs, the state counters, every tensor with its shape and
// no other, all finite, adam.v >= 0. Only the dataset-size check is left to the trainer. The hash is FNV-1a (64-bit) over
// every tensor's name, shape and float32 bits in file order, so two checkpoints with the
// same hash hold the same training state, bit for bit (tests/e2e/kill_test.sh compares a
// resumed run with an uninterrupted one this way). Exits 1, naming the file and what is
// wrong, if any file is not a complete ddpm checkpoint.
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <map>
#include <string>

#include "ddpm/core/check.h"
#include "ddpm/core/hash.h"
#include "ddpm/io/safetensors.h"
#include "ddpm/train/trainer.h"
#include "ddpm/model/unet.h"

using namespace ddpm;

namespace {

std::string check_and_hash(const std::string& path) {
  SafeTensors st = load_safetensors(path);
  // Exactly the trainer's checks (ddpm/train/trainer.h); only the dataset size is the trainer's alone.
  const CheckpointContents contents = validate_checkpoint(st);

  Fnv1a fnv;
  for (const auto& nt : st.tensors) {
    fnv.add(nt.first.data(), nt.first.size() + 1);  // with the NUL, as a separator
    for (int64_t d : nt.second.shape()) fnv.add(&d, sizeof d);
    fnv.add(nt.second.data(), static_cast<size_t>(nt.second.numel()) * sizeof(float));
  }
  char line[64];
  std::snprintf(line, sizeof line, "%016" PRIx64, fnv.h);
  return std::string(line) + "  step " + std::to_string(contents.state.step) + "  " + path;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2 || !std::strcmp(argv[1], "--help") || !std::strcmp(argv[1], "-h")) {
    std::fprintf(argc < 2 ? stderr : stdout,
                 "usage: ./ckpt_hash CHECKPOINT...\n\nChecks that each file is a complete ddpm training checkpoint "
                 "and prints a hash of its tensors, its step and its name.\n");
    return argc < 2 ? 2 : 0;
  }
  int status = 0;
  for (int i = 1; i < argc; i++) {
    try {
      std::printf("%s\n", check_and_hash(argv[i]).c_str());
    } catch (const std::exception& e) {
      std::fprintf(stderr, "error: %s\n", e.what());
      status = 1;
    }
  }
  return status;
}
