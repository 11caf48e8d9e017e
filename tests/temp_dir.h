// tests/temp_dir.h: a unique folder under /tmp for one test, removed with everything in
// it when the TempDir goes out of scope; and small file helpers for crafting inputs.
#pragma once

#include <doctest/doctest.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

namespace ddpm {
namespace testing {

struct TempDir {
  std::string path;
  TempDir() {
    char name[] = "/tmp/ddpm_test_XXXXXX";
    REQUIRE(mkdtemp(name) != nullptr);
    path = name;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
  std::string operator/(const std::string& file) const { return path + "/" + file; }
  std::vector<std::string> list() const;  // file names in the folder, sorted
};

// The names of the files in a folder, sorted.
inline std::vector<std::string> list_files(const std::string& dir) {
  std::vector<std::string> names;
  for (const auto& e : std::filesystem::directory_iterator(dir)) names.push_back(e.path().filename().string());
  std::sort(names.begin(), names.end());
  return names;
}

inline std::vector<std::string> TempDir::list() const { return list_files(path); }

inline void write_bytes(const std::string& path, const std::vector<uint8_t>& bytes) {
  std::ofstream f(path, std::ios::binary);
  f.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  REQUIRE(f.good());
}

// A file of `size` bytes that starts with `head` and is a hole after it (ftruncate): an
// 8 GB file that costs no disk.
inline void write_sparse(const std::string& path, const std::vector<uint8_t>& head, uint64_t size) {
  write_bytes(path, head);
  REQUIRE(truncate(path.c_str(), static_cast<off_t>(size)) == 0);
}

inline std::vector<uint8_t> read_bytes(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
}

}  // namespace testing
}  // namespace ddpm
