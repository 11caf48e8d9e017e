#include "ddpm/io/json.h"

#include <cstdio>

#include "ddpm/core/check.h"

namespace ddpm {

const JsonValue* JsonValue::find(const std::string& key) const {
  for (const auto& m : members)
    if (m.first == key) return &m.second;
  return nullptr;
}

const char* json_kind_name(JsonValue::Kind kind) {
  switch (kind) {
    case JsonValue::Null: return "null";
    case JsonValue::Bool: return "boolean";
    case JsonValue::Number: return "number";
    case JsonValue::String: return "string";
    case JsonValue::Array: return "array";
    case JsonValue::Object: return "object";
  }
  return "?";
}

// Length of the UTF-8 sequence starting at s[i] (1..4), or 0 when it is invalid
// (overlong, surrogate, above U+10FFFF, truncated, or a stray continuation byte).
static size_t utf8_sequence_length(const unsigned char* s, size_t n, size_t i) {
  unsigned char c = s[i];
  if (c < 0x80) return 1;
  size_t len;
  uint32_t cp;
  if ((c & 0xE0) == 0xC0) len = 2, cp = c & 0x1F;
  else if ((c & 0xF0) == 0xE0) len = 3, cp = c & 0x0F;
  else if ((c & 0xF8) == 0xF0) len = 4, cp = c & 0x07;
  else return 0;
  if (n - i < len) return 0;
  for (size_t k = 1; k < len; k++) {
    if ((s[i + k] & 0xC0) != 0x80) return 0;
    cp = (cp << 6) | (s[i + k] & 0x3F);
  }
  static const uint32_t min_cp[5] = {0, 0, 0x80, 0x800, 0x10000};
  if (cp < min_cp[len] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
  return len;
}

bool is_valid_utf8(const std::string& s) {
  const unsigned char* p = reinterpret_cast<const unsigned char*>(s.data());
  for (size_t i = 0; i < s.size();) {
    size_t len = utf8_sequence_length(p, s.size(), i);
    if (len == 0) return false;
    i += len;
  }
  return true;
}

namespace {

struct Parser {
  const unsigned char* s;
  size_t n;
  size_t pos = 0;
  const std::string& context;
  size_t base;

  [[noreturn]] void error(const std::string& what, size_t at) const {
    DDPM_FAIL(context << ": JSON error at byte " << (base + at) << ": " << what);
  }
  [[noreturn]] void error(const std::string& what) const { error(what, pos); }

  std::string describe_here() const {
    if (pos >= n) return "end of input";
    char buf[32];
    unsigned char c = s[pos];
    if (c >= 0x20 && c < 0x7F) std::snprintf(buf, sizeof(buf), "'%c'", c);
    else std::snprintf(buf, sizeof(buf), "byte 0x%02X", c);
    return buf;
  }

  void skip_ws() {
    while (pos < n && (s[pos] == ' ' || s[pos] == '\t' || s[pos] == '\n' || s[pos] == '\r')) pos++;
  }

  void expect_literal(const char* word) {
    size_t start = pos;
    for (const char* w = word; *w; w++, pos++)
      if (pos >= n || s[pos] != static_cast<unsigned char>(*w)) error(std::string("expected '") + word + "'", start);
  }

  JsonValue value(int depth) {
    if (depth > 64) error("nesting deeper than 64 levels");
    skip_ws();
    JsonValue v;
    v.offset = base + pos;
    if (pos >= n) error("unexpected end of input, expected a value");
    unsigned char c = s[pos];
    if (c == '{') return object(std::move(v), depth);
    if (c == '[') return array(std::move(v), depth);
    if (c == '"') {
      v.kind = JsonValue::String;
      v.text = string_body();
      return v;
    }
    if (c == 't') return expect_literal("true"), v.kind = JsonValue::Bool, v.boolean = true, v;
    if (c == 'f') return expect_literal("false"), v.kind = JsonValue::Bool, v;
    if (c == 'n') return expect_literal("null"), v;
    if (c == '-' || (c >= '0' && c <= '9')) {
      v.kind = JsonValue::Number;
      v.text = number();
      return v;
    }
    error("expected a value, found " + describe_here());
  }

  // { "key": value, ... } from its '{' on (v holds its offset); keys must be unique.
  JsonValue object(JsonValue v, int depth) {
    v.kind = JsonValue::Object;
    pos++;
    skip_ws();
    if (pos < n && s[pos] == '}') return pos++, v;
    for (;;) {
      skip_ws();
      if (pos >= n || s[pos] != '"') error("expected a string key, found " + describe_here());
      size_t key_at = pos;
      std::string key = string_body();
      for (const auto& m : v.members)
        if (m.first == key) error("duplicate key \"" + key + "\" (keys must be unique)", key_at);
      skip_ws();
      if (pos >= n || s[pos] != ':') error("expected ':' after key \"" + key + "\", found " + describe_here());
      pos++;
      v.members.emplace_back(std::move(key), value(depth + 1));
      skip_ws();
      if (pos < n && s[pos] == ',') { pos++; continue; }
      if (pos < n && s[pos] == '}') { pos++; return v; }
      error("expected ',' or '}' in object, found " + describe_here());
    }
  }

  // [ value, ... ] from its '[' on (v holds its offset).
  JsonValue array(JsonValue v, int depth) {
    v.kind = JsonValue::Array;
    pos++;
    skip_ws();
    if (pos < n && s[pos] == ']') return pos++, v;
    for (;;) {
      v.items.push_back(value(depth + 1));
      skip_ws();
      if (pos < n && s[pos] == ',') { pos++; continue; }
      if (pos < n && s[pos] == ']') { pos++; return v; }
      error("expected ',' or ']' in array, found " + describe_here());
    }
  }

  bool digit_here() const { return pos < n && s[pos] >= '0' && s[pos] <= '9'; }

  // -? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?
  std::string number() {
    size_t start = pos;
    if (s[pos] == '-') pos++;
    if (!digit_here()) error("expected a digit in number");
    if (s[pos] == '0') {
      pos++;
      if (digit_here()) error("leading zero in number", start);
    } else {
      while (digit_here()) pos++;
    }
    if (pos < n && s[pos] == '.') {
      pos++;
      if (!digit_here()) error("expected a digit after '.' in number");
      while (digit_here()) pos++;
    }
    if (pos < n && (s[pos] == 'e' || s[pos] == 'E')) {
      pos++;
      if (pos < n && (s[pos] == '+' || s[pos] == '-')) pos++;
      if (!digit_here()) error("expected a digit in exponent");
      while (digit_here()) pos++;
    }
    return std::string(reinterpret_cast<const char*>(s + start), pos - start);
  }

  uint32_t hex4() {
    if (n - pos < 4) error("truncated \\u escape");
    uint32_t u = 0;
    for (int k = 0; k < 4; k++, pos++) {
      unsigned char h = s[pos];
      u <<= 4;
      if (h >= '0' && h <= '9') u |= h - '0';
      else if (h >= 'a' && h <= 'f') u |= h - 'a' + 10;
      else if (h >= 'A' && h <= 'F') u |= h - 'A' + 10;
      else error("bad hex digit in \\u escape");
    }
    return u;
  }

  static void append_utf8(std::string& out, uint32_t cp) {
    if (cp < 0x80) {
      out += static_cast<char>(cp);
    } else if (cp < 0x800) {
      out += static_cast<char>(0xC0 | (cp >> 6));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
      out += static_cast<char>(0xE0 | (cp >> 12));
      out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    } else {
      out += static_cast<char>(0xF0 | (cp >> 18));
      out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
      out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    }
  }

  // At the opening quote; returns the decoded string and leaves pos after the closing one.
  std::string string_body() {
    size_t start = pos;
    pos++;
    std::string out;
    for (;;) {
      if (pos >= n) error("unterminated string", start);
      unsigned char c = s[pos];
      if (c == '"') { pos++; return out; }
      if (c < 0x20) error("control character in string (escape it)");
      if (c == '\\') {
        pos++;
        if (pos >= n) error("unterminated string", start);
        unsigned char e = s[pos++];
        switch (e) {
          case '"': out += '"'; break;
          case '\\': out += '\\'; break;
          case '/': out += '/'; break;
          case 'b': out += '\b'; break;
          case 'f': out += '\f'; break;
          case 'n': out += '\n'; break;
          case 'r': out += '\r'; break;
          case 't': out += '\t'; break;
          case 'u': {
            size_t esc_at = pos - 2;
            uint32_t cp = hex4();
            if (cp >= 0xDC00 && cp <= 0xDFFF) error("lone low surrogate in \\u escape", esc_at);
            if (cp >= 0xD800 && cp <= 0xDBFF) {
              if (n - pos < 6 || s[pos] != '\\' || s[pos + 1] != 'u') error("lone high surrogate in \\u escape", esc_at);
              pos += 2;
              uint32_t lo = hex4();
              if (lo < 0xDC00 || lo > 0xDFFF) error("high surrogate not followed by a low one", esc_at);
              cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            }
            append_utf8(out, cp);
            break;
          }
          default: pos--, error("bad escape in string");
        }
        continue;
      }
      size_t len = utf8_sequence_length(s, n, pos);
      if (len == 0) error("invalid UTF-8 in string");
      out.append(reinterpret_cast<const char*>(s + pos), len);
      pos += len;
    }
  }
};

}  // namespace

JsonValue parse_json(const char* text, size_t size, const std::string& context, size_t base_offset) {
  Parser p{reinterpret_cast<const unsigned char*>(text), size, 0, context, base_offset};
  JsonValue v = p.value(0);
  p.skip_ws();
  if (p.pos != size) p.error("unexpected " + p.describe_here() + " after the value");
  return v;
}

bool json_to_uint64(const JsonValue& value, uint64_t* out) {
  if (value.kind != JsonValue::Number || value.text.empty()) return false;
  uint64_t x = 0;
  for (char c : value.text) {
    if (c < '0' || c > '9') return false;
    uint64_t d = static_cast<uint64_t>(c - '0');
    if (x > (UINT64_MAX - d) / 10) return false;
    x = x * 10 + d;
  }
  *out = x;
  return true;
}

std::string json_quote(const std::string& s) {
  std::string out = "\"";
  for (unsigned char c : s) {
    if (c == '"') out += "\\\"";
    else if (c == '\\') out += "\\\\";
    else if (c < 0x20) {
      char buf[8];
      std::snprintf(buf, sizeof(buf), "\\u%04X", c);
      out += buf;
    } else {
      out += static_cast<char>(c);
    }
  }
  return out + "\"";
}

}  // namespace ddpm
