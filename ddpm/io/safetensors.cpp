#include "ddpm/io/safetensors.h"

#include <algorithm>
#include <cstring>
#include <functional>
#include <set>

#include "ddpm/core/check.h"
#include "ddpm/io/file.h"
#include "ddpm/io/json.h"

namespace ddpm {

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "safetensors data is little-endian; so must the host be");

const Tensor* SafeTensors::find(const std::string& name) const {
  for (const auto& nt : tensors)
    if (nt.first == name) return &nt.second;
  return nullptr;
}

const Tensor& SafeTensors::at(const std::string& name) const {
  const Tensor* t = find(name);
  DDPM_CHECK(t, "safetensors '" << source << "': no tensor '" << name << "' (it has " << tensors.size()
                                << " tensors); was it written by another program or config?");
  return *t;
}

// --- writing ------------------------------------------------------------------

// The header: {"__metadata__":{...},"name":{"dtype":"F32","shape":[...],"data_offsets":[b,e]},...}
// followed by spaces up to a multiple of 8 bytes, and preceded by its length.
static std::string encode_header(const NamedTensors& tensors, const std::map<std::string, std::string>& metadata) {
  std::set<std::string> seen;
  for (const auto& nt : tensors) {
    const std::string& name = nt.first;
    DDPM_CHECK(!name.empty(), "save_safetensors: a tensor has an empty name");
    DDPM_CHECK(name != "__metadata__", "save_safetensors: '__metadata__' is reserved and cannot name a tensor");
    DDPM_CHECK(is_valid_utf8(name), "save_safetensors: tensor name '" << name << "' is not valid UTF-8");
    DDPM_CHECK(seen.insert(name).second, "save_safetensors: tensor name '" << name << "' appears twice");
    DDPM_CHECK(nt.second.defined(), "save_safetensors: tensor '" << name << "' is undefined");
  }
  std::string json = "{";
  if (!metadata.empty()) {
    json += "\"__metadata__\":{";
    bool first = true;
    for (const auto& kv : metadata) {
      DDPM_CHECK(is_valid_utf8(kv.first) && is_valid_utf8(kv.second),
                 "save_safetensors: metadata '" << kv.first << "' is not valid UTF-8");
      if (!first) json += ",";
      first = false;
      json += json_quote(kv.first) + ":" + json_quote(kv.second);
    }
    json += "}";
    if (!tensors.empty()) json += ",";
  }
  uint64_t offset = 0;
  for (size_t i = 0; i < tensors.size(); i++) {
    const Tensor& t = tensors[i].second;
    uint64_t bytes = static_cast<uint64_t>(t.numel()) * sizeof(float);
    if (i) json += ",";
    json += json_quote(tensors[i].first) + ":{\"dtype\":\"F32\",\"shape\":[";
    for (int64_t d = 0; d < t.dim(); d++) json += (d ? "," : "") + std::to_string(t.shape()[d]);
    json += "],\"data_offsets\":[" + std::to_string(offset) + "," + std::to_string(offset + bytes) + "]}";
    offset += bytes;
  }
  json += "}";
  while (json.size() % 8 != 0) json += ' ';
  DDPM_CHECK(json.size() <= kSafetensorsMaxHeader, "save_safetensors: header of " << json.size()
                                                     << " bytes exceeds the 100 MB cap readers enforce");
  std::string out(8, '\0');
  uint64_t n = json.size();
  for (int k = 0; k < 8; k++) out[k] = static_cast<char>((n >> (8 * k)) & 0xFF);
  return out + json;
}

std::vector<uint8_t> encode_safetensors(const NamedTensors& tensors, const std::map<std::string, std::string>& metadata) {
  std::string header = encode_header(tensors, metadata);
  std::vector<uint8_t> out(header.begin(), header.end());
  for (const auto& nt : tensors) {
    const uint8_t* p = reinterpret_cast<const uint8_t*>(nt.second.data());
    out.insert(out.end(), p, p + nt.second.numel() * sizeof(float));
  }
  return out;
}

void save_safetensors(const std::string& path, const NamedTensors& tensors,
                      const std::map<std::string, std::string>& metadata) {
  std::string header = encode_header(tensors, metadata);
  AtomicFile file(path);
  file.write(header.data(), header.size());
  for (const auto& nt : tensors) file.write(nt.second.data(), nt.second.numel() * sizeof(float));
  file.commit();
}

// --- reading ------------------------------------------------------------------

namespace {

struct DtypeInfo {
  const char* name;
  size_t size;
  bool readable;  // converted to float by this reader
};

const DtypeInfo kDtypes[] = {
    {"F32", 4, true},  {"F64", 8, true},      {"F16", 2, true},      {"BF16", 2, true}, {"I64", 8, true},
    {"I32", 4, true},  {"I16", 2, true},      {"I8", 1, true},       {"U8", 1, true},   {"BOOL", 1, true},
    {"U16", 2, false}, {"U32", 4, false},     {"U64", 8, false},     {"F8_E4M3", 1, false},
    {"F8_E5M2", 1, false},
};
const char* kReadable = "F32, F64, F16, BF16, I64, I32, I16, I8, U8, BOOL";

struct Entry {
  std::string name;
  const DtypeInfo* dtype;
  Shape shape;
  uint64_t begin, end;
};

float half_to_float(uint16_t h) {
  uint32_t sign = (h >> 15) & 1, exponent = (h >> 10) & 0x1F, mantissa = h & 0x3FF;
  uint32_t bits;
  if (exponent == 0x1F) {
    bits = (sign << 31) | 0x7F800000u | (mantissa << 13);  // inf or nan
  } else if (exponent != 0) {
    bits = (sign << 31) | ((exponent + 112) << 23) | (mantissa << 13);  // 127 - 15 = 112
  } else if (mantissa == 0) {
    bits = sign << 31;
  } else {  // subnormal half: mantissa * 2^-24, exact in float
    float f = static_cast<float>(mantissa) * (1.0f / 16777216.0f);
    return sign ? -f : f;
  }
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

template <typename T>
T load_le(const uint8_t* p) {
  T v;
  std::memcpy(&v, p, sizeof(T));
  return v;
}

void convert_to_float(float* out, const uint8_t* p, int64_t n, const std::string& dtype) {
  if (dtype == "F32") std::memcpy(out, p, n * sizeof(float));
  else if (dtype == "F64") for (int64_t i = 0; i < n; i++) out[i] = static_cast<float>(load_le<double>(p + 8 * i));
  else if (dtype == "F16") for (int64_t i = 0; i < n; i++) out[i] = half_to_float(load_le<uint16_t>(p + 2 * i));
  else if (dtype == "BF16")
    for (int64_t i = 0; i < n; i++) {
      uint32_t bits = static_cast<uint32_t>(load_le<uint16_t>(p + 2 * i)) << 16;
      std::memcpy(&out[i], &bits, 4);
    }
  else if (dtype == "I64") for (int64_t i = 0; i < n; i++) out[i] = static_cast<float>(load_le<int64_t>(p + 8 * i));
  else if (dtype == "I32") for (int64_t i = 0; i < n; i++) out[i] = static_cast<float>(load_le<int32_t>(p + 4 * i));
  else if (dtype == "I16") for (int64_t i = 0; i < n; i++) out[i] = static_cast<float>(load_le<int16_t>(p + 2 * i));
  else if (dtype == "I8") for (int64_t i = 0; i < n; i++) out[i] = static_cast<float>(static_cast<int8_t>(p[i]));
  else if (dtype == "U8") for (int64_t i = 0; i < n; i++) out[i] = static_cast<float>(p[i]);
  else if (dtype == "BOOL") for (int64_t i = 0; i < n; i++) out[i] = p[i] ? 1.0f : 0.0f;
  else DDPM_FAIL("safetensors: internal error: no conversion for dtype " << dtype);
}

}  // namespace

#define ST_FAIL(...) DDPM_FAIL("safetensors '" << source << "': " << __VA_ARGS__)
#define ST_CHECK(cond, ...) DDPM_CHECK(cond, "safetensors '" << source << "': " << __VA_ARGS__)

// Where a file's bytes come from (memory, or a file read range by range): bytes
// [offset, offset + n) into out, a range already checked to lie inside the file.
using ReadAt = std::function<void(uint64_t offset, uint8_t* out, size_t n)>;

// The reader behind parse_safetensors and load_safetensors, for a file of `size` bytes:
// the 8-byte length, then the header it names (both checked against the cap and the
// size first), then every entry checked against the data buffer, and only then each
// tensor's own bytes, read into the tensor allocated for them.
static const char* const kRedo = "; the file is truncated or corrupt: re-download it or re-save it";

// The 8-byte header length and the JSON header it announces, each checked against its bound
// and the file's size before it is read.
struct Header {
  uint64_t length = 0;  // of the JSON text; the data buffer starts at 8 + length
  JsonValue root;
};
static Header read_header(uint64_t size, const ReadAt& read_at, const std::string& source) {
  ST_CHECK(size >= 8, "file is " << size << " bytes, shorter than the 8-byte header length: truncated at byte "
                                 << size << " or not a safetensors file");
  uint8_t length_bytes[8];
  read_at(0, length_bytes, 8);
  Header h;
  for (int k = 0; k < 8; k++) h.length |= static_cast<uint64_t>(length_bytes[k]) << (8 * k);
  ST_CHECK(h.length <= kSafetensorsMaxHeader,
           "header length " << h.length << " exceeds the 100 MB cap: not a safetensors file, or corrupt");
  ST_CHECK(h.length <= size - 8, "header length " << h.length << " runs past the end of the " << size
                                                  << "-byte file: truncated at byte " << size << " (need at least "
                                                  << 8 + h.length << ")" << kRedo);
  std::string text(static_cast<size_t>(h.length), '\0');
  read_at(8, reinterpret_cast<uint8_t*>(&text[0]), text.size());
  ST_CHECK(h.length >= 2 && text[0] == '{', "header does not start with '{': not a safetensors file");
  h.root = parse_json(text.data(), text.size(), "safetensors '" + source + "' header", 8);
  ST_CHECK(h.root.kind == JsonValue::Object, "header is a JSON " << json_kind_name(h.root.kind) << ", not an object");
  return h;
}

// "__metadata__": an object of strings.
static void read_metadata(const JsonValue& v, std::map<std::string, std::string>& out, const std::string& source) {
  ST_CHECK(v.kind == JsonValue::Object,
           "\"__metadata__\" is a JSON " << json_kind_name(v.kind) << ", must be an object of strings");
  for (const auto& kv : v.members) {
    ST_CHECK(kv.second.kind == JsonValue::String, "\"__metadata__\" field \"" << kv.first << "\" is a JSON "
                                                      << json_kind_name(kv.second.kind) << ", must be a string");
    out[kv.first] = kv.second.text;
  }
}

// One tensor's entry {dtype, shape, data_offsets}: a known readable dtype, at most 4
// dimensions, offsets inside the data buffer of `data_size` bytes holding exactly the shape.
static Entry read_entry(const std::string& name, const JsonValue& v, uint64_t size, uint64_t data_size,
                        const std::string& source) {
  ST_CHECK(v.kind == JsonValue::Object, "tensor '" << name << "': entry is a JSON " << json_kind_name(v.kind)
                                                   << ", expected {\"dtype\", \"shape\", \"data_offsets\"}");
  const JsonValue* dtype = v.find("dtype");
  const JsonValue* shape = v.find("shape");
  const JsonValue* offsets = v.find("data_offsets");
  ST_CHECK(dtype && shape && offsets, "tensor '" << name << "': missing field \""
                                                 << (!dtype ? "dtype" : !shape ? "shape" : "data_offsets") << "\"");
  ST_CHECK(dtype->kind == JsonValue::String, "tensor '" << name << "': \"dtype\" is not a string");
  Entry e{name, nullptr, {}, 0, 0};
  for (const DtypeInfo& d : kDtypes)
    if (dtype->text == d.name) e.dtype = &d;
  ST_CHECK(e.dtype, "tensor '" << name << "': unknown dtype \"" << dtype->text << "\"");
  ST_CHECK(e.dtype->readable, "tensor '" << name << "': dtype " << e.dtype->name << " is not supported (ddpm reads "
                                         << kReadable << "); convert the tensor to F32");
  ST_CHECK(shape->kind == JsonValue::Array, "tensor '" << name << "': \"shape\" is not an array");
  ST_CHECK(shape->items.size() <= 4, "tensor '" << name << "': shape has " << shape->items.size()
                                                << " dimensions; ddpm tensors have at most 4");
  for (const JsonValue& dim : shape->items) {
    uint64_t d;
    ST_CHECK(json_to_uint64(dim, &d), "tensor '" << name << "': shape entry "
                                                 << (dim.kind == JsonValue::Number ? dim.text : json_kind_name(dim.kind))
                                                 << " is not a non-negative integer");
    ST_CHECK(d <= (uint64_t(1) << 40), "tensor '" << name << "': shape dimension " << d << " is too large");
    e.shape.push_back(static_cast<int64_t>(d));
  }
  // The element count. Products beyond the data buffer are errors anyway, so saturating
  // there avoids overflow (a zero dimension still makes it 0).
  uint64_t count = 1;
  bool too_big = false;
  for (int64_t d : e.shape) {
    if (d == 0) { count = 0, too_big = false; break; }
    if (count > data_size / static_cast<uint64_t>(d)) too_big = true;
    else count *= static_cast<uint64_t>(d);
  }
  ST_CHECK(offsets->kind == JsonValue::Array && offsets->items.size() == 2 &&
               json_to_uint64(offsets->items[0], &e.begin) && json_to_uint64(offsets->items[1], &e.end),
           "tensor '" << name << "': \"data_offsets\" must be [begin, end] with non-negative integers");
  ST_CHECK(e.begin <= e.end, "tensor '" << name << "': data_offsets [" << e.begin << ", " << e.end
                                        << "] end before they begin");
  ST_CHECK(e.end <= data_size, "tensor '" << name << "': data_offsets [" << e.begin << ", " << e.end
                                          << "] run past the " << data_size << "-byte data buffer: truncated at byte "
                                          << size << " (need " << size - data_size + e.end << ")" << kRedo);
  const uint64_t bytes_len = e.end - e.begin;
  ST_CHECK(!too_big && count * e.dtype->size == bytes_len,
           "tensor '" << name << "': shape " << to_string(e.shape) << " of " << e.dtype->name << " needs "
                      << (too_big ? std::string("more") : std::to_string(count * e.dtype->size))
                      << " bytes, but data_offsets [" << e.begin << ", " << e.end << "] hold " << bytes_len);
  return e;
}

// The entries' order by offset, checked to tile the data buffer: sorted by offset, each
// begins where the previous one ended, and the last ends at the end of the file.
static std::vector<size_t> check_tiling(const std::vector<Entry>& entries, uint64_t data_start, uint64_t data_size,
                                        const std::string& source) {
  std::vector<size_t> order(entries.size());
  for (size_t i = 0; i < order.size(); i++) order[i] = i;
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    return entries[a].begin != entries[b].begin ? entries[a].begin < entries[b].begin : entries[a].end < entries[b].end;
  });
  uint64_t covered = 0;
  const Entry* previous = nullptr;
  for (size_t i : order) {
    const Entry& e = entries[i];
    ST_CHECK(e.begin >= covered, "tensor '" << e.name << "' data_offsets [" << e.begin << ", " << e.end
                                            << "] overlap tensor '" << previous->name << "' [" << previous->begin
                                            << ", " << previous->end << "]" << kRedo);
    ST_CHECK(e.begin == covered, "gap: bytes [" << covered << ", " << e.begin << ") of the data buffer before tensor '"
                                                << e.name << "' belong to no tensor" << kRedo);
    covered = e.end;
    previous = &e;
  }
  ST_CHECK(covered == data_size, "gap: the last " << data_size - covered << " bytes of the data buffer (from byte "
                                                  << data_start + covered << ") belong to no tensor" << kRedo);
  return order;
}

// One checked entry's tensor: allocated, read and converted to float.
static Tensor read_tensor(const Entry& e, uint64_t data_start, const ReadAt& read_at, const std::string& source) {
  const size_t bytes_len = static_cast<size_t>(e.end - e.begin);
  const bool as_is = std::strcmp(e.dtype->name, "F32") == 0;
  Tensor t;
  std::vector<uint8_t> raw;
  try {
    t = Tensor(e.shape);  // ddpm::Error when memory runs out
    if (!as_is) raw.resize(bytes_len);
  } catch (const std::exception& error) {  // that, or std::bad_alloc: say which file and tensor
    ST_FAIL("tensor '" << e.name << "' " << to_string(e.shape) << " of " << e.dtype->name << " (" << bytes_len
                       << " bytes in the file) does not fit in memory: " << error.what());
  }
  if (as_is) {
    read_at(data_start + e.begin, reinterpret_cast<uint8_t*>(t.data()), bytes_len);
  } else {
    read_at(data_start + e.begin, raw.data(), bytes_len);
    convert_to_float(t.data(), raw.data(), t.numel(), e.dtype->name);
  }
  return t;
}

// The header first, then every entry checked against the file, then the tensors, one at a
// time: nothing is allocated from a size before the size is checked.
static SafeTensors read_safetensors(uint64_t size, const ReadAt& read_at, const std::string& source) {
  const Header header = read_header(size, read_at, source);
  const uint64_t data_start = 8 + header.length, data_size = size - data_start;
  SafeTensors out;
  out.source = source;
  std::vector<Entry> entries;
  for (const auto& member : header.root.members) {
    if (member.first == "__metadata__") read_metadata(member.second, out.metadata, source);
    else entries.push_back(read_entry(member.first, member.second, size, data_size, source));
  }
  for (size_t i : check_tiling(entries, data_start, data_size, source))
    out.tensors.emplace_back(entries[i].name, read_tensor(entries[i], data_start, read_at, source));
  return out;
}

SafeTensors parse_safetensors(const uint8_t* bytes, size_t size, const std::string& source) {
  return read_safetensors(size, [bytes](uint64_t offset, uint8_t* out, size_t n) {
    if (n) std::memcpy(out, bytes + offset, n);
  }, source);
}

SafeTensors load_safetensors(const std::string& path) {
  InputFile file(path);  // refuses what has no real size (/dev/zero, a pipe, a directory)
  return read_safetensors(file.size(), [&file](uint64_t offset, uint8_t* out, size_t n) {
    file.read_at(offset, out, n);
  }, path);
}

std::map<std::string, std::string> load_safetensors_metadata(const std::string& path) {
  InputFile file(path);
  const Header header = read_header(file.size(), [&file](uint64_t offset, uint8_t* out, size_t n) {
    file.read_at(offset, out, n);
  }, path);
  std::map<std::string, std::string> metadata;
  for (const auto& member : header.root.members)
    if (member.first == "__metadata__") read_metadata(member.second, metadata, path);
  return metadata;
}

void check_tensor_shapes(const SafeTensors& loaded, const std::vector<std::pair<std::string, Shape>>& expected,
                         const std::string& hint, bool allow_extra) {
  std::vector<std::string> problems;
  std::set<std::string> expected_names;
  for (const auto& ns : expected) {
    expected_names.insert(ns.first);
    const Tensor* t = loaded.find(ns.first);
    if (!t)
      problems.push_back("has no tensor " + ns.first + " (model expects " + to_string(ns.second) + ")");
    else if (t->shape() != ns.second)
      problems.push_back("has " + ns.first + " " + t->shape_str() + ", model expects " + to_string(ns.second));
  }
  if (!allow_extra)
    for (const auto& nt : loaded.tensors)
      if (!expected_names.count(nt.first))
        problems.push_back("has " + nt.first + " " + nt.second.shape_str() + ", which the model does not expect");
  if (problems.empty()) return;
  std::string message = "checkpoint '" + loaded.source + "' ";
  const size_t shown = 3;
  for (size_t i = 0; i < problems.size() && i < shown; i++) message += (i ? "; " : "") + problems[i];
  if (problems.size() > shown) message += "; and " + std::to_string(problems.size() - shown) + " more differences";
  DDPM_FAIL(message << ": " << hint);
}

}  // namespace ddpm
