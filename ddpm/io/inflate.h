// inflate.h: a zlib (RFC 1950) and deflate (RFC 1951) decoder, for the PNG reader.
//
// zlib_inflate(data, size, max_output, source)
//     The bytes a zlib stream decompresses to. The stream is a 2-byte header (CMF: method
//     8 = deflate with a window of at most 32 KiB; FLG: no preset dictionary, and
//     CMF * 256 + FLG a multiple of 31), deflate blocks, then the Adler-32 of the output,
//     big-endian. Every block type is decoded: stored (LEN and its one's complement NLEN
//     checked), fixed Huffman codes and dynamic ones (code lengths checked: no
//     over-subscribed code, no incomplete code except a single-symbol one, an end-of-block
//     code present, no repeat before a first length or past HLIT + HDIST).
//
// What is refused, each a ddpm::Error that names `source` and the byte where it was
// found: a bad header, a reserved block type, a bad Huffman code, a symbol no code
// defines (length 286/287, distance 30/31), a distance before the start of the output,
// a stream that ends early (truncated), a wrong Adler-32, bytes after the Adler-32, and
// output beyond max_output: a decompression bomb stops there, having produced at most
// max_output bytes, so a caller that knows the size to expect bounds the memory spent.
//
// The decoder follows Mark Adler's puff.c (zlib's contrib/puff): canonical Huffman codes
// decoded one bit at a time from the per-length counts, which is short and checks
// everything, at some cost in speed (tens of MB/s) that small images do not notice.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace ddpm {

// No deflate stream expands more than this many times: at best a 258-byte match costs
// 2 bits (a 1-bit length code and a 1-bit distance code). So a header that announces
// more output than kDeflateMaxRatio times its compressed bytes is refused before
// anything is allocated for it.
constexpr uint64_t kDeflateMaxRatio = 1032;

std::vector<uint8_t> zlib_inflate(const uint8_t* data, size_t size, size_t max_output, const std::string& source);

}  // namespace ddpm
