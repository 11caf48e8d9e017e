// file.h: checked reads and crash-safe (atomic) writes.
//
// InputFile(path)
//     A regular file, opened for reads of byte ranges checked against its real size.
//     Anything else (a directory, /dev/zero, a pipe) is refused at once: its size is
//     unknown, so nothing read from it could be checked before it is allocated.
// GzipStream(path)
//     The output of the system's `gzip -dc`, for .gz datasets, read in pieces: a reader
//     takes the header first, then exactly the bytes the header announces.
// read_file_bytes(path, max_bytes) / read_gzip_file(path, max_bytes)
//     A whole file (decompressed), at most max_bytes. Errors name the file and the
//     system's reason.
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

class InputFile {
 public:
  // Opens path; throws naming it when it cannot be opened or is not a regular file.
  explicit InputFile(const std::string& path);
  ~InputFile();
  InputFile(const InputFile&) = delete;
  InputFile& operator=(const InputFile&) = delete;

  uint64_t size() const { return size_; }  // the real size, from fstat
  const std::string& path() const { return path_; }
  // Bytes [offset, offset + n) into out. A range beyond size() is an error ("truncated at
  // byte <size>"), checked before reading; so is a file that shrinks while it is read.
  void read_at(uint64_t offset, void* out, size_t n) const;

 private:
  std::string path_;
  int fd_ = -1;
  uint64_t size_ = 0;
};

// The decompressed bytes of a gzip file, from the system's `gzip -dc -- path` (no shell
// involved), in order. A missing gzip is an error with the command to install it.
class GzipStream {
 public:
  explicit GzipStream(const std::string& path);
  ~GzipStream();  // stops and reaps gzip if it is still running
  GzipStream(const GzipStream&) = delete;
  GzipStream& operator=(const GzipStream&) = delete;

  // Up to n bytes into out; fewer only when the output has ended.
  size_t read(void* out, size_t n);
  uint64_t position() const { return position_; }  // bytes read so far
  // Stops reading: waits for gzip and throws gzip's own message if it failed. Call it
  // once read() has returned short (the output ended); with `stop`, gzip is killed
  // first (output beyond what the reader wants) and nothing is thrown.
  void finish(bool stop = false);

 private:
  std::string path_;
  int pid_ = -1, out_fd_ = -1, err_fd_ = -1;
  std::string messages_;  // gzip's stderr, the first 4 KB
  uint64_t position_ = 0;
};

// The whole of a regular file. A size beyond max_bytes is an error, checked against the
// real size before anything is allocated.
std::vector<uint8_t> read_file_bytes(const std::string& path, size_t max_bytes = size_t(1) << 30);

// The decompressed bytes of a gzip file (GzipStream). Output beyond max_bytes is an error
// (a guard against gzip bombs), as is a missing gzip or a gzip that fails (its message is
// included).
std::vector<uint8_t> read_gzip_file(const std::string& path, size_t max_bytes = size_t(1) << 30);

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
