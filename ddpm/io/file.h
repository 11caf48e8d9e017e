// file.h: whole-file reads and crash-safe (atomic) writes.
//
// read_file_bytes(path)
//     The file's bytes. Errors name the file and the system's reason.
// read_gzip_file(path) / read_file_maybe_gzip(path)
//     Decompressed through the system's gzip, for .gz datasets.
// AtomicFile / write_file_atomic(path, bytes)
//     Writes go to "<path>.tmp.<pid>"; commit() fsyncs that file, renames it over
//     <path> and fsyncs the directory. A crash or a write error at any moment leaves
//     either the old <path> or the new one, never a mix: the temp file is removed on
//     error (and by the destructor when commit() never ran). A failed write (disk
//     full, file size limit, unwritable folder) throws ddpm::Error naming the file.
//
// Note for programs: a file size limit (`ulimit -f`) also raises SIGXFSZ, which kills
// the process by default. A trainer that wants the clear error instead of the signal
// ignores it once at start-up: signal(SIGXFSZ, SIG_IGN).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace ddpm {

std::vector<uint8_t> read_file_bytes(const std::string& path);

// The decompressed bytes of a gzip file, by running the system's `gzip -dc -- path`
// (no shell involved). Output beyond max_bytes is an error (a guard against gzip
// bombs), as is a missing gzip or a gzip that fails (its message is included).
std::vector<uint8_t> read_gzip_file(const std::string& path, size_t max_bytes = size_t(1) << 30);

// read_gzip_file for names ending in ".gz", read_file_bytes otherwise.
std::vector<uint8_t> read_file_maybe_gzip(const std::string& path, size_t max_bytes = size_t(1) << 30);

class AtomicFile {
 public:
  explicit AtomicFile(const std::string& path);  // creates "<path>.tmp.<pid>"
  ~AtomicFile();                                 // removes the temp file unless committed
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;

  void write(const void* data, size_t size);  // all of it, or throws
  void commit();                              // fsync, rename over path, fsync the folder
  const std::string& path() const { return path_; }
  const std::string& temp_path() const { return temp_path_; }

 private:
  void abandon();  // close and unlink the temp file (never throws)
  std::string path_, temp_path_;
  int fd_ = -1;
  bool committed_ = false;
};

void write_file_atomic(const std::string& path, const void* data, size_t size);
inline void write_file_atomic(const std::string& path, const std::vector<uint8_t>& bytes) {
  write_file_atomic(path, bytes.data(), bytes.size());
}

}  // namespace ddpm
