// json.h: a small strict JSON parser (RFC 8259) and a string quoter, for file headers.
//
// parse_json(text, size, context, base_offset)
//     Parses exactly one value surrounded by optional whitespace. Strict: no trailing
//     commas, no comments, no NaN, no leading zeros, no control characters or invalid
//     UTF-8 in strings, no lone surrogates, no duplicate keys in an object, nesting at
//     most 64 deep. Errors throw ddpm::Error "<context>: JSON error at byte N: what";
//     N counts from base_offset (so a header that starts at file byte 8 reports file
//     offsets). The parser never reads outside [text, text + size).
// Numbers keep their literal text; json_to_uint64 accepts only plain non-negative
// integers ("12", not "12.0", "1e3" or "-0") that fit in 64 bits.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace ddpm {

struct JsonValue {
  enum Kind { Null, Bool, Number, String, Array, Object };
  Kind kind = Null;
  bool boolean = false;
  std::string text;                                        // String: the decoded value; Number: the literal
  std::vector<JsonValue> items;                            // Array
  std::vector<std::pair<std::string, JsonValue>> members;  // Object, in file order, keys unique
  size_t offset = 0;                                       // where the value starts (with base_offset)

  const JsonValue* find(const std::string& key) const;  // Object member or nullptr
};

const char* json_kind_name(JsonValue::Kind kind);  // "object", "string", ...

JsonValue parse_json(const char* text, size_t size, const std::string& context, size_t base_offset = 0);

bool json_to_uint64(const JsonValue& value, uint64_t* out);

bool is_valid_utf8(const std::string& s);

std::string json_quote(const std::string& s);  // "\"...\"" with ", \ and control characters escaped

}  // namespace ddpm
