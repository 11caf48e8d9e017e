#include <doctest/doctest.h>

#include <string>

#include "ddpm/core/check.h"
#include "ddpm/io/json.h"

using namespace ddpm;

static JsonValue parse(const std::string& s) { return parse_json(s.data(), s.size(), "test", 0); }

static std::string error_of(const std::string& s) {
  try {
    parse(s);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST_CASE("json: parses objects, arrays, strings, numbers and literals") {
  JsonValue v = parse(" {\"a\": [1, -2.5e3, 0], \"b\": {\"c\": \"x\\\"y\\u00e9\\ud83d\\ude00\"}, \"t\": true, "
                      "\"f\": false, \"n\": null}  \n");
  REQUIRE(v.kind == JsonValue::Object);
  REQUIRE(v.members.size() == 5);
  CHECK(v.members[0].first == "a");  // file order is kept
  const JsonValue* a = v.find("a");
  REQUIRE(a);
  REQUIRE(a->items.size() == 3);
  CHECK(a->items[1].kind == JsonValue::Number);
  CHECK(a->items[1].text == "-2.5e3");
  CHECK(v.find("b")->find("c")->text == "x\"y\xC3\xA9\xF0\x9F\x98\x80");  // U+00E9 and U+1F600 in UTF-8
  CHECK(v.find("t")->boolean);
  CHECK(v.find("f")->kind == JsonValue::Bool);
  CHECK(!v.find("f")->boolean);
  CHECK(v.find("n")->kind == JsonValue::Null);
  CHECK(v.find("zz") == nullptr);
  CHECK(parse("[]").items.empty());
  CHECK(parse("{}").members.empty());
}

TEST_CASE("json: rejects malformed input with the byte offset") {
  // Each input must fail, and the message must say what and where.
  const std::pair<const char*, const char*> bad[] = {
      {"", "unexpected end of input"},
      {"{\"a\":1,}", "expected a string key"},
      {"[1,]", "expected a value"},
      {"{\"a\" 1}", "expected ':'"},
      {"{\"a\":1 \"b\":2}", "expected ',' or '}'"},
      {"[1 2]", "expected ',' or ']'"},
      {"{\"a\":1,\"a\":2}", "duplicate key \"a\""},
      {"01", "leading zero"},
      {"1.", "digit after '.'"},
      {"1e", "digit in exponent"},
      {"-", "expected a digit"},
      {"NaN", "expected a value"},
      {"tru", "expected 'true'"},
      {"\"abc", "unterminated string"},
      {"\"a\tb\"", "control character"},
      {"\"\\x\"", "bad escape"},
      {"\"\\u12zz\"", "bad hex digit"},
      {"\"\\u12", "truncated \\u escape"},
      {"\"\\ud800\"", "lone high surrogate"},
      {"\"\\udc00\"", "lone low surrogate"},
      {"\"\xC3\x28\"", "invalid UTF-8"},
      {"\"\xC0\xAF\"", "invalid UTF-8"},  // overlong '/'
      {"{} x", "after the value"},
      {"// c\n{}", "expected a value"},
  };
  for (const auto& b : bad) {
    std::string msg = error_of(b.first);
    INFO("input: " << std::string(b.first) << " -> " << msg);
    CHECK(msg.find(b.second) != std::string::npos);
    CHECK(msg.find("test: JSON error at byte") != std::string::npos);
  }
  CHECK(error_of("[1,\n  x]").find("at byte 6") != std::string::npos);
  // base_offset shifts the reported position (a safetensors header starts at byte 8).
  CHECK_THROWS_WITH_AS(parse_json("  x", 3, "hdr", 8), doctest::Contains("hdr: JSON error at byte 10"), Error);
}

TEST_CASE("json: nesting is capped instead of overflowing the stack") {
  CHECK(error_of(std::string(100000, '[')).find("nesting deeper than 64") != std::string::npos);
  std::string ok = std::string(60, '[') + std::string(60, ']');
  CHECK(parse(ok).kind == JsonValue::Array);
}

TEST_CASE("json: json_to_uint64 takes only plain non-negative integers") {
  uint64_t x = 0;
  CHECK(json_to_uint64(parse("18446744073709551615"), &x));
  CHECK(x == UINT64_MAX);
  CHECK(!json_to_uint64(parse("18446744073709551616"), &x));  // 2^64 overflows
  CHECK(!json_to_uint64(parse("-1"), &x));
  CHECK(!json_to_uint64(parse("-0"), &x));
  CHECK(!json_to_uint64(parse("1.0"), &x));
  CHECK(!json_to_uint64(parse("1e2"), &x));
  CHECK(!json_to_uint64(parse("\"1\""), &x));
  CHECK(json_to_uint64(parse("0"), &x));
  CHECK(x == 0);
}

TEST_CASE("json: json_quote round-trips through the parser") {
  std::string s = std::string("a\"b\\c\n\x01\x1f/") + "\xC3\xA9";
  std::string q = json_quote(s);
  CHECK(q.find('\n') == std::string::npos);
  CHECK(parse(q).text == s);
  CHECK(is_valid_utf8(s));
  CHECK(!is_valid_utf8("\xFF"));
  CHECK(!is_valid_utf8("\xED\xA0\x80"));  // encoded surrogate U+D800
}
