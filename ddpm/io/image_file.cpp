#include "ddpm/io/image_file.h"

#include <cstring>
#include <vector>

#include "ddpm/core/check.h"
#include "ddpm/io/file.h"
#include "ddpm/io/pnm.h"

namespace ddpm {

// The format a file's first bytes announce, for the error that refuses it.
static const char* known_format(const uint8_t* b, size_t n) {
  if (n >= 3 && b[0] == 0xFF && b[1] == 0xD8 && b[2] == 0xFF) return "JPEG";
  if (n >= 4 && std::memcmp(b, "GIF8", 4) == 0) return "GIF";
  if (n >= 2 && b[0] == 'B' && b[1] == 'M') return "BMP";
  if (n >= 12 && std::memcmp(b, "RIFF", 4) == 0 && std::memcmp(b + 8, "WEBP", 4) == 0) return "WebP";
  return nullptr;
}

Image decode_image(const uint8_t* bytes, size_t size, const std::string& source) {
  if (size >= 4 && bytes[0] == 0x89 && std::memcmp(bytes + 1, "PNG", 3) == 0) return decode_png(bytes, size, source);
  if (size >= 2 && bytes[0] == 'P' && bytes[1] >= '1' && bytes[1] <= '7') return decode_pnm(bytes, size, source);
  const char* format = known_format(bytes, size);
  DDPM_FAIL("image: '" << source << "' is " << (format ? std::string("a ") + format + " file" : "not an image file")
                       << " this reader knows: it reads PNG, binary PGM (P5) and PPM (P6); convert it, for example "
                          "`convert in out.png`");
}

Image read_image(const std::string& path) {
  InputFile file(path);  // refuses folders, devices and pipes before any read
  DDPM_CHECK(file.size() <= kImageMaxFileBytes, "image: '" << path << "' is " << file.size()
                                                           << " bytes, more than the " << kImageMaxFileBytes
                                                           << " this reader accepts for one image");
  std::vector<uint8_t> bytes(static_cast<size_t>(file.size()));
  file.read_at(0, bytes.data(), bytes.size());
  return decode_image(bytes.data(), bytes.size(), path);
}

}  // namespace ddpm
