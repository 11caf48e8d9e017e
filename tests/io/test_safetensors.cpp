#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmath>
#include <cstring>
#include <limits>

#include "ddpm/core/check.h"
#include "ddpm/io/file.h"
#include "ddpm/io/safetensors.h"
#include "tests/memory_limit.h"
#include "tests/temp_dir.h"
#include "tests/testing.h"

using namespace ddpm;
using testing::TempDir;
using testing::check_clean_error;

// A file from a header string and a data buffer, with no padding (the reader must not
// require it).
static std::vector<uint8_t> craft(const std::string& header, size_t data_bytes = 0, uint64_t header_len = UINT64_MAX) {
  if (header_len == UINT64_MAX) header_len = header.size();
  std::string out(8, '\0');
  for (int k = 0; k < 8; k++) out[k] = static_cast<char>(header_len >> (8 * k));
  out += header;
  for (size_t i = 0; i < data_bytes; i++) out += static_cast<char>(i);
  return std::vector<uint8_t>(out.begin(), out.end());
}

static std::string error_of(const std::vector<uint8_t>& bytes) {
  try {
    parse_safetensors(bytes.data(), bytes.size(), "crafted.safetensors");
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

static bool same_bits(const Tensor& a, const Tensor& b) {
  return a.shape() == b.shape() && std::memcmp(a.data(), b.data(), a.numel() * sizeof(float)) == 0;
}

static NamedTensors sample_tensors() {
  Tensor special = Tensor::from({2, 3}, {0.0f, -0.0f, std::numeric_limits<float>::infinity(),
                                         std::numeric_limits<float>::quiet_NaN(),
                                         std::numeric_limits<float>::denorm_min(), -1.5e38f});
  return {{"down.0.conv.weight", testing::randn({4, 3, 3, 3}, 1)},
          {"special", special},
          {"scalar", Tensor::full({}, 3.25f)},  // 0-d: shape [], one element
          {"empty", Tensor(Shape{0})},          // no elements, data_offsets [a, a]
          {"empty2d", Tensor(Shape{0, 5})},
          {"b", testing::randn({7}, 2)}};
}

TEST_CASE("safetensors: round trip is exact, including metadata, 0-d and empty tensors") {
  NamedTensors tensors = sample_tensors();
  std::map<std::string, std::string> metadata = {
      {"format", "ddpm-checkpoint-1"}, {"config", "{\"ch\": 32, \"quote\": \"\\\"\"}\n\ttabs"}, {"unicode", "\xC3\xA9"}};
  std::vector<uint8_t> bytes = encode_safetensors(tensors, metadata);

  // Layout: little-endian header length, then a header padded with spaces so the data
  // starts at a multiple of 8, then the tensors back to back.
  uint64_t n = 0;
  for (int k = 0; k < 8; k++) n |= uint64_t(bytes[k]) << (8 * k);
  CHECK((8 + n) % 8 == 0);
  CHECK(bytes[8] == '{');
  size_t data_bytes = 0;
  for (const auto& nt : tensors) data_bytes += nt.second.numel() * sizeof(float);
  CHECK(bytes.size() == 8 + n + data_bytes);
  std::string header(bytes.begin() + 8, bytes.begin() + 8 + n);
  CHECK(header.find("\"down.0.conv.weight\":{\"dtype\":\"F32\",\"shape\":[4,3,3,3],\"data_offsets\":[0,432]}") !=
        std::string::npos);
  CHECK(header.find("\"scalar\":{\"dtype\":\"F32\",\"shape\":[],") != std::string::npos);
  CHECK(header.find_last_not_of(' ') == header.find_last_of('}'));

  SafeTensors loaded = parse_safetensors(bytes.data(), bytes.size(), "mem");
  CHECK(loaded.metadata == metadata);
  REQUIRE(loaded.tensors.size() == tensors.size());
  for (size_t i = 0; i < tensors.size(); i++) {
    CHECK(loaded.tensors[i].first == tensors[i].first);  // data-buffer order == written order
    CHECK_MESSAGE(same_bits(loaded.tensors[i].second, tensors[i].second), tensors[i].first);
  }
  CHECK(loaded.at("scalar").dim() == 0);
  CHECK(loaded.at("scalar")[0] == 3.25f);
  CHECK(loaded.at("empty2d").shape() == Shape{0, 5});
  CHECK_THROWS_WITH_AS(loaded.at("nope"), doctest::Contains("safetensors 'mem': no tensor 'nope'"), Error);

  // Through a file: the same bytes, and the same tensors back.
  TempDir dir;
  save_safetensors(dir / "a.safetensors", tensors, metadata);
  CHECK(testing::read_bytes(dir / "a.safetensors") == bytes);
  SafeTensors from_file = load_safetensors(dir / "a.safetensors");
  CHECK(from_file.source == dir / "a.safetensors");
  CHECK(same_bits(from_file.at("down.0.conv.weight"), tensors[0].second));
  CHECK(dir.list() == std::vector<std::string>{"a.safetensors"});  // no temp file left

  // Nothing at all, and metadata only.
  std::vector<uint8_t> none = encode_safetensors({});
  CHECK(parse_safetensors(none.data(), none.size(), "none").tensors.empty());
  std::vector<uint8_t> meta_only = encode_safetensors({}, {{"k", "v"}});
  CHECK(parse_safetensors(meta_only.data(), meta_only.size(), "m").metadata.at("k") == "v");
}

TEST_CASE("safetensors: load_safetensors_metadata reads the metadata alone, with the header's checks") {
  TempDir dir;
  const std::map<std::string, std::string> metadata = {{"format", "ddpm-checkpoint-1"}, {"config.in_ch", "3"}};
  std::vector<uint8_t> bytes = encode_safetensors(sample_tensors(), metadata);
  write_file_atomic((dir / "a.safetensors"), bytes);
  CHECK(load_safetensors_metadata((dir / "a.safetensors")) == metadata);
  // The tensors' bytes are not read: a file cut inside the data still gives its metadata...
  uint64_t n = 0;
  for (int k = 0; k < 8; k++) n |= uint64_t(bytes[k]) << (8 * k);
  write_file_atomic((dir / "cut.safetensors"), std::vector<uint8_t>(bytes.begin(), bytes.begin() + 8 + n + 4));
  CHECK(load_safetensors_metadata((dir / "cut.safetensors")) == metadata);
  // ...but one cut inside the header is refused, naming the file
  write_file_atomic((dir / "short.safetensors"), std::vector<uint8_t>(bytes.begin(), bytes.begin() + 8 + n / 2));
  CHECK_THROWS_WITH_AS(load_safetensors_metadata((dir / "short.safetensors")),
                       doctest::Contains("short.safetensors"), Error);
}

TEST_CASE("safetensors: the writer refuses what the reader would reject") {
  Tensor t({2});
  CHECK_THROWS_WITH_AS(encode_safetensors({{"a", t}, {"a", t}}), doctest::Contains("'a' appears twice"), Error);
  CHECK_THROWS_WITH_AS(encode_safetensors({{"", t}}), doctest::Contains("empty name"), Error);
  CHECK_THROWS_WITH_AS(encode_safetensors({{"__metadata__", t}}), doctest::Contains("reserved"), Error);
  CHECK_THROWS_WITH_AS(encode_safetensors({{"\xFF", t}}), doctest::Contains("not valid UTF-8"), Error);
  CHECK_THROWS_WITH_AS(encode_safetensors({{"u", Tensor()}}), doctest::Contains("undefined"), Error);
}

TEST_CASE("safetensors: reads F64, F16, BF16, I64 and U8 by converting to float") {
  std::string h = "{\"d\":{\"dtype\":\"F64\",\"shape\":[2],\"data_offsets\":[0,16]},"
                  "\"h\":{\"dtype\":\"F16\",\"shape\":[5],\"data_offsets\":[16,26]},"
                  "\"b\":{\"dtype\":\"BF16\",\"shape\":[1],\"data_offsets\":[26,28]},"
                  "\"i\":{\"dtype\":\"I64\",\"shape\":[1,1],\"data_offsets\":[28,36]},"
                  "\"u\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[36,38]}}";
  std::vector<uint8_t> bytes = craft(h);
  auto put = [&](const void* p, size_t n) { bytes.insert(bytes.end(), (const uint8_t*)p, (const uint8_t*)p + n); };
  double d[2] = {0.1, -3.0};
  uint16_t half[5] = {0x3C00, 0xC000, 0x0001, 0x7C00, 0x3555};  // 1, -2, 2^-24 (subnormal), inf, 0.333251953125
  uint16_t bf = 0x3FC0;                                          // 1.5
  int64_t i = -7;
  uint8_t u[2] = {0, 255};
  put(d, 16), put(half, 10), put(&bf, 2), put(&i, 8), put(u, 2);
  SafeTensors st = parse_safetensors(bytes.data(), bytes.size(), "conv");
  CHECK(st.at("d")[0] == 0.1f);
  CHECK(st.at("d")[1] == -3.0f);
  CHECK(st.at("h")[0] == 1.0f);
  CHECK(st.at("h")[1] == -2.0f);
  CHECK(st.at("h")[2] == std::ldexp(1.0f, -24));
  CHECK(std::isinf(st.at("h")[3]));
  CHECK(st.at("h")[4] == 0.333251953125f);
  CHECK(st.at("b")[0] == 1.5f);
  CHECK(st.at("i")[0] == -7.0f);
  CHECK(st.at("i").shape() == Shape{1, 1});
  CHECK(st.at("u")[1] == 255.0f);
}

TEST_CASE("safetensors: every malformed file gets an error naming the file and what is wrong") {
  const std::string ok = "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}";
  CHECK(error_of(craft(ok, 8)) == "");

  struct Case {
    std::vector<uint8_t> bytes;
    const char* expect;
  };
  const Case cases[] = {
      {{1, 2, 3}, "file is 3 bytes, shorter than the 8-byte header length: truncated at byte 3"},
      {craft(ok, 0, uint64_t(1) << 40), "header length 1099511627776 exceeds the 100 MB cap"},
      {craft(ok, 8, ok.size() + 100), "runs past the end of the"},
      {craft("[]"), "header does not start with '{'"},
      {craft("{\"a\":{\"dtype\":\"F32\",}}"), "header: JSON error at byte 28: expected a string key"},
      {craft("{\"a\":1}"), "tensor 'a': entry is a JSON number"},
      {craft("{\"a\":{\"dtype\":\"F32\",\"data_offsets\":[0,0]}}"), "tensor 'a': missing field \"shape\""},
      {craft("{\"a\":{\"dtype\":\"F33\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8), "tensor 'a': unknown dtype \"F33\""},
      {craft("{\"a\":{\"dtype\":\"F8_E4M3\",\"shape\":[2],\"data_offsets\":[0,2]}}", 2),
       "tensor 'a': dtype F8_E4M3 is not supported"},
      {craft("{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", 8),
       "tensor 'a': shape [3] of F32 needs 12 bytes, but data_offsets [0, 8] hold 8"},
      {craft("{\"a\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296],\"data_offsets\":[0,8]}}", 8),
       "needs more bytes"},
      {craft("{\"a\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,2],\"data_offsets\":[0,8]}}", 8),
       "shape has 5 dimensions; ddpm tensors have at most 4"},
      {craft("{\"a\":{\"dtype\":\"F32\",\"shape\":[-2],\"data_offsets\":[0,8]}}", 8),
       "shape entry -2 is not a non-negative integer"},
      {craft("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,0]}}", 8), "end before they begin"},
      {craft("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0]}}", 8), "must be [begin, end]"},
      {craft(ok, 4), "data_offsets [0, 8] run past the 4-byte data buffer: truncated at byte"},
      {craft("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
             "\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,16]}}",
             16),
       "duplicate key \"a\""},
      {craft("{\"x\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
             "\"y\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}",
             12),
       "tensor 'y' data_offsets [4, 12] overlap tensor 'x' [0, 8]"},
      {craft("{\"x\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
             "\"y\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,12]}}",
             12),
       "gap: bytes [4, 8) of the data buffer before tensor 'y' belong to no tensor"},
      {craft(ok, 12), "gap: the last 4 bytes of the data buffer"},
      {craft("{\"__metadata__\":{\"step\":5}}"), "\"__metadata__\" field \"step\" is a JSON number, must be a string"},
      {craft("{\"__metadata__\":[]}"), "\"__metadata__\" is a JSON array"},
  };
  for (const Case& c : cases) {
    std::string msg = error_of(c.bytes);
    INFO("got: " << msg);
    CHECK(msg.find(c.expect) != std::string::npos);
    CHECK(msg.find("safetensors 'crafted.safetensors'") != std::string::npos);
  }
}

TEST_CASE("safetensors: every truncation and every corrupted byte is an error or a valid file, never a crash") {
  std::vector<uint8_t> good = encode_safetensors({{"w", testing::randn({3, 2}, 3)}, {"s", Tensor::full({}, 1.0f)}},
                                                 {{"step", "12"}});
  // Every proper prefix is missing bytes, so it must be rejected.
  for (size_t len = 0; len < good.size(); len++) {
    std::vector<uint8_t> cut(good.begin(), good.begin() + len);
    std::string msg = error_of(cut);
    INFO("prefix " << len << ": " << msg);
    CHECK(msg.find("safetensors 'crafted.safetensors'") != std::string::npos);
  }
  // Single-byte corruptions: whatever the reader says, it must not crash or read out of
  // bounds (run under ASan to make the second half of that claim).
  for (size_t i = 0; i < good.size(); i++) {
    for (uint8_t v : {0x00, 0x01, 0x22, 0x2C, 0x5B, 0x7B, 0x7D, 0xFF}) {
      std::vector<uint8_t> bad = good;
      bad[i] = v;
      error_of(bad);
    }
  }
}

TEST_CASE("safetensors: check_tensor_shapes says which parameter differs") {
  SafeTensors st;
  st.source = "ckpt.safetensors";
  st.tensors = {{"down.0.conv.weight", Tensor({64, 32, 3, 3})}, {"out.bias", Tensor({1})}};
  std::vector<std::pair<std::string, Shape>> expected = {{"down.0.conv.weight", {32, 32, 3, 3}}, {"out.bias", {1}}};
  CHECK_THROWS_WITH_AS(check_tensor_shapes(st, expected, "was it trained with another --model?"),
                       doctest::Contains("checkpoint 'ckpt.safetensors' has down.0.conv.weight [64, 32, 3, 3], model "
                                         "expects [32, 32, 3, 3]: was it trained with another --model?"),
                       Error);
  expected[0].second = {64, 32, 3, 3};
  CHECK_NOTHROW(check_tensor_shapes(st, expected));
  expected.push_back({"temb.weight", {128, 32}});
  CHECK_THROWS_WITH_AS(check_tensor_shapes(st, expected), doctest::Contains("has no tensor temb.weight (model expects [128, 32])"),
                       Error);
  expected.pop_back();
  expected.pop_back();
  CHECK_NOTHROW(check_tensor_shapes(st, expected));  // extra tensors allowed by default
  CHECK_THROWS_WITH_AS(check_tensor_shapes(st, expected, "hint", false),
                       doctest::Contains("has out.bias [1], which the model does not expect: hint"), Error);
}

TEST_CASE("safetensors: atomic save replaces the file whole, or leaves the old one intact") {
  TempDir dir;
  const std::string path = dir / "ckpt.safetensors";
  save_safetensors(path, {{"w", Tensor::full({4}, 1.0f)}}, {{"step", "1"}});
  std::vector<uint8_t> old_bytes = testing::read_bytes(path);
  save_safetensors(path, {{"w", Tensor::full({4}, 2.0f)}}, {{"step", "2"}});
  CHECK(load_safetensors(path).metadata.at("step") == "2");
  CHECK(dir.list() == std::vector<std::string>{"ckpt.safetensors"});
  save_safetensors(path, {{"w", Tensor::full({4}, 1.0f)}}, {{"step", "1"}});
  CHECK(testing::read_bytes(path) == old_bytes);

  // A folder that does not exist: a clear error naming the file, and nothing created.
  CHECK_THROWS_WITH_AS(save_safetensors(dir / "no/such/dir/x.safetensors", {}),
                       doctest::Contains(("cannot create '" + (dir / "no/such/dir/x.safetensors") + ".tmp.").c_str()), Error);

  // A write that fails part way (the file size limit stands in for a full disk): the
  // error names the file, the old checkpoint is byte-identical and no temp file is left.
  struct rlimit saved;
  REQUIRE(getrlimit(RLIMIT_FSIZE, &saved) == 0);
  void (*saved_handler)(int) = signal(SIGXFSZ, SIG_IGN);  // else the kernel kills us
  struct rlimit tiny = saved;
  tiny.rlim_cur = 4096;
  REQUIRE(setrlimit(RLIMIT_FSIZE, &tiny) == 0);
  std::string msg;
  try {
    save_safetensors(path, {{"w", Tensor::full({100000}, 3.0f)}});  // 400 KB > 4 KB
  } catch (const Error& e) {
    msg = e.what();
  }
  setrlimit(RLIMIT_FSIZE, &saved);
  signal(SIGXFSZ, saved_handler);
  INFO(msg);
  CHECK(msg.find("writing '" + path + "' failed: File too large") != std::string::npos);
  CHECK(msg.find("is untouched") != std::string::npos);
  CHECK(testing::read_bytes(path) == old_bytes);
  CHECK(dir.list() == std::vector<std::string>{"ckpt.safetensors"});

  // An unwritable folder (root ignores permissions, so only as another user).
  if (geteuid() != 0) {
    std::string ro = dir / "ro";
    REQUIRE(mkdir(ro.c_str(), 0555) == 0);
    CHECK_THROWS_WITH_AS(save_safetensors(ro + "/x.safetensors", {}), doctest::Contains("Permission denied"), Error);
    chmod(ro.c_str(), 0755);
  } else {
    MESSAGE("running as root: the read-only folder case is covered by the missing-folder case only");
  }

  // Reading errors name the file too.
  CHECK_THROWS_WITH_AS(load_safetensors(dir / "missing.safetensors"),
                       doctest::Contains(("cannot open '" + (dir / "missing.safetensors") + "'").c_str()), Error);
}

// --- sizes checked before anything is allocated (issue 14, section 2) -------------------
// Each reader runs in a child process under a memory limit (tests/memory_limit.h): a
// reader that allocated from a size it had not checked would end there in std::bad_alloc.

static const uint64_t k8GB = uint64_t(8) << 30;

TEST_CASE("safetensors: /dev/zero, a pipe and a folder are refused before any read, naming them (memory limit)") {
  check_clean_error(testing::run_with_memory_limit([] { load_safetensors("/dev/zero"); }),
                    "'/dev/zero' is a character device, not a regular file: its size is unknown");
  TempDir dir;
  const std::string fifo = dir / "pipe.safetensors";
  REQUIRE(mkfifo(fifo.c_str(), 0600) == 0);
  check_clean_error(testing::run_with_memory_limit([&] { load_safetensors(fifo); }), "'" + fifo + "' is a pipe");
  check_clean_error(testing::run_with_memory_limit([&] { load_safetensors(dir.path); }),
                    "'" + dir.path + "' is a directory");
}

TEST_CASE("safetensors: an 8 GB sparse file is refused after its 8-byte header length (memory limit)") {
  TempDir dir;
  const std::string path = dir / "x.safetensors";
  testing::write_sparse(path, {}, k8GB);  // all zeros: header length 0
  check_clean_error(testing::run_with_memory_limit([&] { load_safetensors(path); }),
                    "safetensors '" + path + "': header does not start with '{'");
}

TEST_CASE("safetensors: a header naming a tensor beyond the file is refused before the tensor is allocated "
          "(memory limit)") {
  TempDir dir;
  const std::string path = dir / "huge.safetensors";
  // 16 GB of F32 named in an 8 GB file.
  testing::write_sparse(path, craft("{\"w\":{\"dtype\":\"F32\",\"shape\":[4000000000],\"data_offsets\":[0,16000000000]}}"),
                        k8GB);
  check_clean_error(testing::run_with_memory_limit([&] { load_safetensors(path); }),
                    "tensor 'w': data_offsets [0, 16000000000] run past the");
  // A tensor the file really holds, but memory does not: a clear error, not std::bad_alloc.
  if (!testing::kMemoryLimitApplies) {
    MESSAGE("AddressSanitizer build: no memory limit, so the 8 GB tensor that fits the file is not loaded");
    return;
  }
  std::string header = "{\"w\":{\"dtype\":\"F32\",\"shape\":[2000000000],\"data_offsets\":[0,8000000000]}}";
  const std::string fits = dir / "fits.safetensors";
  testing::write_sparse(fits, craft(header), 8 + header.size() + 8000000000ull);
  check_clean_error(testing::run_with_memory_limit([&] { load_safetensors(fits); }),
                    "tensor 'w' [2000000000] of F32 (8000000000 bytes in the file) does not fit in memory");
}

TEST_CASE("file: read_file_bytes checks the real size against its cap before allocating (memory limit)") {
  check_clean_error(testing::run_with_memory_limit([] { read_file_bytes("/dev/zero"); }),
                    "'/dev/zero' is a character device");
  TempDir dir;
  const std::string path = dir / "big.png";
  testing::write_sparse(path, {}, k8GB);
  check_clean_error(testing::run_with_memory_limit([&] { read_file_bytes(path); }),
                    "'" + path + "' is 8589934592 bytes, more than the 1073741824 this reader accepts");
  testing::write_bytes(path, {1, 2, 3});
  CHECK(read_file_bytes(path) == std::vector<uint8_t>{1, 2, 3});
}
