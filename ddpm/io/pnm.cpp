#include "ddpm/io/pnm.h"

#include <algorithm>

#include "ddpm/core/check.h"

namespace ddpm {

namespace {

bool is_space(uint8_t c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'; }

// The next decimal number of the header at pos, after whitespace and comments; a value
// above `max` comes back as max + 1, for the caller's bound to refuse.
uint64_t header_number(const uint8_t* bytes, size_t size, size_t& pos, const char* what, uint64_t max,
                       const std::string& source) {
  for (;;) {
    while (pos < size && is_space(bytes[pos])) pos++;
    if (pos < size && bytes[pos] == '#') {
      while (pos < size && bytes[pos] != '\n' && bytes[pos] != '\r') pos++;
      continue;
    }
    break;
  }
  DDPM_CHECK(pos < size, "pnm: '" << source << "' is truncated at byte " << size << ", inside its header, before the "
                                  << what);
  DDPM_CHECK(bytes[pos] >= '0' && bytes[pos] <= '9', "pnm: '" << source << "' has byte " << int(bytes[pos])
                                                              << " at byte " << pos << " where its header's " << what
                                                              << " (a decimal number) should be: corrupt");
  uint64_t value = 0;  // saturates at max + 1: every digit is consumed, nothing overflows
  for (; pos < size && bytes[pos] >= '0' && bytes[pos] <= '9'; pos++)
    value = std::min<uint64_t>(value * 10 + uint64_t(bytes[pos] - '0'), max + 1);
  return value;
}

// A header number for messages: a saturated one (max + 1) is shown as "more than max".
std::string shown(uint64_t value, uint64_t max) {
  return value > max ? "more than " + std::to_string(max) : std::to_string(value);
}

}  // namespace

Image decode_pnm(const uint8_t* bytes, size_t size, const std::string& source) {
  DDPM_CHECK(size >= 2 && bytes[0] == 'P' && (bytes[1] == '5' || bytes[1] == '6'),
             "pnm: '" << source << "' is not a binary PGM (P5) or PPM (P6) file"
                      << (size >= 2 && bytes[0] == 'P' && bytes[1] >= '1' && bytes[1] <= '7'
                              ? std::string(" (it is netpbm's P") + char(bytes[1]) +
                                    "; convert it, for example `pnmtopnm` or `convert in out.ppm`)"
                              : std::string("")));
  const int channels = bytes[1] == '5' ? 1 : 3;
  size_t pos = 2;
  const uint64_t width = header_number(bytes, size, pos, "width", kImageMaxSide, source);
  const uint64_t height = header_number(bytes, size, pos, "height", kImageMaxSide, source);
  const uint64_t maxval = header_number(bytes, size, pos, "maxval", 65535, source);
  DDPM_CHECK(width >= 1 && height >= 1 && width <= uint64_t(kImageMaxSide) && height <= uint64_t(kImageMaxSide),
             "pnm: '" << source << "' is " << shown(width, kImageMaxSide) << " x " << shown(height, kImageMaxSide)
                      << " pixels; each side must be 1.."
                      << kImageMaxSide << ": corrupt, or too large for this reader");
  DDPM_CHECK(maxval >= 1 && maxval <= 65535, "pnm: '" << source << "' has maxval " << shown(maxval, 65535)
                                                      << "; netpbm allows 1..65535: corrupt");
  DDPM_CHECK(maxval <= 255, "pnm: '" << source << "' has 16-bit samples (maxval " << maxval
                                     << "), which this reader does not take; convert it to 8 bits (maxval 255)");
  DDPM_CHECK(pos < size && is_space(bytes[pos]),
             "pnm: '" << source << "' has no whitespace byte after its maxval, at byte " << pos << ": corrupt");
  pos++;
  const uint64_t n = width * height * uint64_t(channels);
  DDPM_CHECK(n <= kImageMaxBytes, "pnm: '" << source << "' is " << width << " x " << height << " x " << channels
                                           << " = " << n << " bytes of pixels, more than the " << kImageMaxBytes
                                           << " this reader accepts");
  DDPM_CHECK(size - pos >= n, "pnm: '" << source << "' is truncated at byte " << size << ": its " << width << " x "
                                       << height << " header announces " << pos + n << " bytes; copy it again");
  Image img;
  img.width = int64_t(width), img.height = int64_t(height), img.channels = channels;
  img.pixels.assign(bytes + pos, bytes + pos + n);
  if (maxval < 255) {
    for (size_t i = 0; i < img.pixels.size(); i++) {
      const uint32_t v = img.pixels[i];
      DDPM_CHECK(v <= maxval, "pnm: '" << source << "' sample " << i << " (pixel (" << i / channels % width << ", "
                                       << i / channels / width << ")) is " << v << ", above its maxval " << maxval
                                       << ": corrupt");
      img.pixels[i] = static_cast<uint8_t>((v * 255 + maxval / 2) / maxval);  // round(v * 255 / maxval)
    }
  }
  return img;
}

}  // namespace ddpm
