#include "ddpm/io/file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "ddpm/check.h"

namespace ddpm {

static std::string os_error() { return std::strerror(errno); }

std::vector<uint8_t> read_file_bytes(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  DDPM_CHECK(fd >= 0, "read_file: cannot open '" << path << "': " << os_error() << "; check the path");
  struct stat st;
  if (::fstat(fd, &st) != 0 || S_ISDIR(st.st_mode)) {
    ::close(fd);
    DDPM_FAIL("read_file: '" << path << "' is a directory or cannot be inspected; pass a file");
  }
  std::vector<uint8_t> bytes;
  // Regular files: the size is known, so read into a buffer of that size. Others
  // (pipes, /dev/stdin) grow as they are read.
  if (S_ISREG(st.st_mode)) bytes.reserve(static_cast<size_t>(st.st_size));
  uint8_t chunk[1 << 16];
  for (;;) {
    ssize_t n = ::read(fd, chunk, sizeof(chunk));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      std::string reason = os_error();
      ::close(fd);
      DDPM_FAIL("read_file: error reading '" << path << "' at byte " << bytes.size() << ": " << reason);
    }
    if (n == 0) break;
    bytes.insert(bytes.end(), chunk, chunk + n);
  }
  ::close(fd);
  return bytes;
}

// The folder part of path ("." when it has none), for the directory fsync.
static std::string parent_dir(const std::string& path) {
  size_t slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

AtomicFile::AtomicFile(const std::string& path) : path_(path) {
  DDPM_CHECK(!path.empty(), "atomic write: empty file name");
  temp_path_ = path + ".tmp." + std::to_string(::getpid());
  fd_ = ::open(temp_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  DDPM_CHECK(fd_ >= 0, "atomic write: cannot create '" << temp_path_ << "' to write '" << path << "': " << os_error()
                                                       << "; check that the folder exists and is writable");
}

AtomicFile::~AtomicFile() {
  if (!committed_) abandon();
}

void AtomicFile::abandon() {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
  ::unlink(temp_path_.c_str());
}

void AtomicFile::write(const void* data, size_t size) {
  DDPM_CHECK(fd_ >= 0 && !committed_, "atomic write: '" << path_ << "' is already committed or abandoned");
  const uint8_t* p = static_cast<const uint8_t*>(data);
  while (size > 0) {
    // At most 1 GiB per call: Linux writes at most ~2 GiB at once anyway.
    size_t want = size < (size_t(1) << 30) ? size : (size_t(1) << 30);
    ssize_t n = ::write(fd_, p, want);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      std::string reason = n < 0 ? os_error() : "wrote 0 bytes";
      abandon();
      DDPM_FAIL("atomic write: writing '" << path_ << "' failed: " << reason
                                          << " (disk full or file size limit?); the previous '" << path_
                                          << "', if any, is untouched");
    }
    p += n;
    size -= static_cast<size_t>(n);
  }
}

void AtomicFile::commit() {
  DDPM_CHECK(fd_ >= 0 && !committed_, "atomic write: '" << path_ << "' is already committed or abandoned");
  if (::fsync(fd_) != 0) {
    std::string reason = os_error();
    abandon();
    DDPM_FAIL("atomic write: fsync of '" << temp_path_ << "' failed: " << reason << "; the previous '" << path_
                                         << "', if any, is untouched");
  }
  int rc = ::close(fd_);
  fd_ = -1;
  if (rc != 0) {
    std::string reason = os_error();
    abandon();
    DDPM_FAIL("atomic write: closing '" << temp_path_ << "' failed: " << reason << "; the previous '" << path_
                                        << "', if any, is untouched");
  }
  if (::rename(temp_path_.c_str(), path_.c_str()) != 0) {
    std::string reason = os_error();
    abandon();
    DDPM_FAIL("atomic write: renaming '" << temp_path_ << "' to '" << path_ << "' failed: " << reason);
  }
  committed_ = true;
  // The rename is durable once the folder's entry is on disk.
  int dir_fd = ::open(parent_dir(path_).c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir_fd >= 0) {
    ::fsync(dir_fd);  // best effort: some filesystems refuse fsync on folders
    ::close(dir_fd);
  }
}

void write_file_atomic(const std::string& path, const void* data, size_t size) {
  AtomicFile file(path);
  file.write(data, size);
  file.commit();
}

}  // namespace ddpm
