// safetensors.h: read and write the safetensors format (huggingface/safetensors).
//
// Layout of a file:
//   bytes [0, 8)        N, the header length, a little-endian uint64
//   bytes [8, 8 + N)    a JSON object, padded with spaces to a multiple of 8 bytes:
//                         {"name": {"dtype": "F32", "shape": [d0, ...], "data_offsets": [begin, end]},
//                          ..., "__metadata__": {"key": "value", ...}}
//   bytes [8 + N, end)  the data buffer; offsets are relative to its start, the tensors
//                       tile it exactly (no gaps, no overlaps), each tensor row-major and
//                       little-endian.
//
// save_safetensors writes F32 tensors in the given order, atomically (see io/file.h).
// load_safetensors reads a file in the order of its layout, checking each size before
// anything is allocated from it: the 8-byte header length (against a 100 MB cap and the
// file's real size), then the header alone; its strict JSON, dtypes, shapes (at most
// 4-D, product times element size equal to the byte length), offsets (inside the file,
// no overlap or gap), unique names and string metadata; and only then each tensor's own
// bytes, into the tensor allocated for them. What has no real size (/dev/zero, a pipe)
// is refused before any read. parse_safetensors does the same on bytes in memory. F32 is
// read as is; F64, F16, BF16, I64, I32, U8 are converted to float; other dtypes are
// rejected by name. Every error names the file and the tensor or field.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "ddpm/core/tensor.h"

namespace ddpm {

using NamedTensors = std::vector<std::pair<std::string, Tensor>>;

struct SafeTensors {
  std::string source;                         // the file name, for error messages
  NamedTensors tensors;                       // in data-buffer order
  std::map<std::string, std::string> metadata;

  const Tensor* find(const std::string& name) const;  // nullptr when absent
  const Tensor& at(const std::string& name) const;    // throws naming the file and the tensor
};

constexpr uint64_t kSafetensorsMaxHeader = 100u << 20;  // 100 MB, as the reference reader

std::vector<uint8_t> encode_safetensors(const NamedTensors& tensors,
                                        const std::map<std::string, std::string>& metadata = {});
void save_safetensors(const std::string& path, const NamedTensors& tensors,
                      const std::map<std::string, std::string>& metadata = {});

SafeTensors parse_safetensors(const uint8_t* bytes, size_t size, const std::string& source);
SafeTensors load_safetensors(const std::string& path);
// The "__metadata__" of a file alone: the 8-byte length and the header are read and
// checked as load_safetensors does, the tensors' bytes are not.
std::map<std::string, std::string> load_safetensors_metadata(const std::string& path);

// Checks that `loaded` holds every expected name with the expected shape; with
// allow_extra false, also that it holds nothing else. Throws one error listing the
// first problems, e.g. "checkpoint 'a.safetensors' has down.0.conv.weight
// [64, 32, 3, 3], model expects [32, 32, 3, 3]", followed by `hint` (for example
// "was it trained with another --model?").
void check_tensor_shapes(const SafeTensors& loaded, const std::vector<std::pair<std::string, Shape>>& expected,
                         const std::string& hint = "was it written for another model config?",
                         bool allow_extra = true);

}  // namespace ddpm
