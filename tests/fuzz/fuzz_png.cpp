// libFuzzer harness: the image readers, PNG above all (its chunks, CRCs, IHDR bounds,
// the inflate, the filters, the palette), and binary PGM/PPM, which read_image also
// takes; then the folder dataset's conversion of what was decoded.
//
// Each input is read twice: in memory (decode_image) and as a file (read_image, through
// InputFile); the two must agree, byte for byte. A decoded image must be well-formed
// (pixels = width x height x channels), and image_to_tensor of it, at 1 and 3 channels
// and 8 x 8, must give values in [-1, 1]. Only ddpm::Error may escape: anything else, a
// crash or a sanitizer report is a finding. `make fuzz` runs it.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include "ddpm/core/check.h"
#include "ddpm/data/image_folder.h"
#include "ddpm/io/image_file.h"
#include "tests/fuzz/fuzz_file.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace ddpm;
  const std::string path = fuzzing::fuzz_file(data, size);
  Image decoded, read;
  if (!fuzzing::both_read([&] { decoded = decode_image(data, size, "fuzz.png"); }, [&] { read = read_image(path); }))
    return 0;
  if (decoded.width != read.width || decoded.height != read.height || decoded.channels != read.channels ||
      decoded.pixels != read.pixels)
    std::abort();
  if (decoded.width < 1 || decoded.height < 1 || decoded.channels < 1 || decoded.channels > 4 ||
      decoded.pixels.size() != size_t(decoded.width * decoded.height * decoded.channels))
    std::abort();
  for (int channels : {1, 3}) {
    std::vector<float> out(size_t(8 * 8 * channels));
    image_to_tensor(decoded, 8, channels, out.data(), "fuzz.png");
    for (float v : out)
      if (!(v >= -1.0f && v <= 1.0f + 1e-6f)) std::abort();
  }
  return 0;
}
