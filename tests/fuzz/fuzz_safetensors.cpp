// libFuzzer harness: the safetensors reader and everything that reads a checkpoint.
//
// Each input is loaded as a safetensors file, through load_safetensors (as a file: the
// header length, the header, then each tensor's bytes) and parse_safetensors (in memory),
// which must agree; when that succeeds, its metadata goes
// through UNetConfig::from_metadata and TrainConfig::from_metadata, its tensors through
// check_tensor_shapes, and, when it claims to be a ddpm checkpoint, through
// Trainer::load_checkpoint of a fresh trainer (a 4-channel U-Net on 8 images of 4x4,
// the setup tests/fuzz/make_corpus.cpp writes the seed checkpoint with).
// Only ddpm::Error may escape: anything else, a crash or a sanitizer report is a finding.
#include <cstddef>
#include <cstdint>
#include <cstdlib>

#include "ddpm/core/check.h"
#include "ddpm/io/safetensors.h"
#include "ddpm/train/trainer.h"
#include "ddpm/model/unet.h"
#include "tests/fuzz/fuzz_file.h"
#include "tests/fuzz/fuzz_setup.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace ddpm;
  SafeTensors st, in_memory;
  bool loaded = false, parsed = false;
  try {
    st = load_safetensors(fuzzing::fuzz_file(data, size));
    loaded = true;
  } catch (const Error&) {
  }
  try {
    in_memory = parse_safetensors(data, size, "fuzz.safetensors");
    parsed = true;
  } catch (const Error&) {
  }
  if (loaded != parsed || st.tensors.size() != in_memory.tensors.size()) std::abort();  // the two disagree
  if (!loaded) return 0;
  volatile float sum = 0;
  for (const auto& nt : st.tensors)
    for (int64_t i = 0; i < nt.second.numel(); i++) sum = sum + nt.second[i];
  try {
    UNetConfig c = UNetConfig::from_metadata(st.metadata, st.source);
    (void)c;
  } catch (const Error&) {
  }
  try {
    TrainConfig c = TrainConfig::from_metadata(st.metadata, st.source);
    (void)c;
  } catch (const Error&) {
  }
  try {
    static const auto shapes = fuzzing::fuzz_parameter_shapes();
    check_tensor_shapes(st, shapes, "was it trained with another --model?");
  } catch (const Error&) {
  }
  auto format = st.metadata.find("format");
  if (format != st.metadata.end() && format->second == "ddpm.checkpoint") {
    static const UNetConfig model_config = fuzzing::fuzz_unet_config();
    Trainer trainer(fuzzing::fuzz_train_config(), fuzzing::fuzz_dataset(), &model_config);
    try {
      trainer.load_checkpoint(st);
      trainer.step();  // a loaded checkpoint must train (or report a NaN cleanly)
    } catch (const Error&) {
    }
  }
  return 0;
}
