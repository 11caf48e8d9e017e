#include "ddpm/io/file.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "ddpm/core/check.h"

extern char** environ;

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

std::vector<uint8_t> read_gzip_file(const std::string& path, size_t max_bytes) {
  // Fail early with the usual message when the file itself is missing.
  DDPM_CHECK(::access(path.c_str(), R_OK) == 0, "read_file: cannot open '" << path << "': " << os_error()
                                                                           << "; check the path");
  int out_pipe[2], err_pipe[2];
  DDPM_CHECK(::pipe2(out_pipe, O_CLOEXEC) == 0, "gzip: pipe failed: " << os_error());
  if (::pipe2(err_pipe, O_CLOEXEC) != 0) {
    ::close(out_pipe[0]), ::close(out_pipe[1]);
    DDPM_FAIL("gzip: pipe failed: " << os_error());
  }
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, out_pipe[1], 1);  // dup2 clears close-on-exec
  posix_spawn_file_actions_adddup2(&actions, err_pipe[1], 2);
  std::string arg0 = "gzip", arg1 = "-dc", arg2 = "--", arg3 = path;
  char* argv[] = {&arg0[0], &arg1[0], &arg2[0], &arg3[0], nullptr};
  pid_t pid = -1;
  int rc = ::posix_spawnp(&pid, "gzip", &actions, nullptr, argv, environ);
  posix_spawn_file_actions_destroy(&actions);
  ::close(out_pipe[1]), ::close(err_pipe[1]);
  if (rc != 0) {
    ::close(out_pipe[0]), ::close(err_pipe[0]);
    DDPM_FAIL("gzip: cannot run 'gzip' to decompress '" << path << "': " << std::strerror(rc)
                                                        << "; install gzip (apt-get install gzip) or gunzip the file");
  }

  // Read stdout and stderr together so that neither pipe fills up and blocks gzip.
  std::vector<uint8_t> bytes;
  std::string messages;
  bool too_big = false;
  struct pollfd fds[2] = {{out_pipe[0], POLLIN, 0}, {err_pipe[0], POLLIN, 0}};
  int open_fds = 2;
  uint8_t chunk[1 << 16];
  while (open_fds > 0 && !too_big) {
    if (::poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      break;
    }
    for (auto& f : fds) {
      if (f.fd < 0 || !(f.revents & (POLLIN | POLLHUP | POLLERR))) continue;
      ssize_t n = ::read(f.fd, chunk, sizeof(chunk));
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        ::close(f.fd);
        f.fd = -1;
        open_fds--;
      } else if (f.fd == out_pipe[0]) {
        if (bytes.size() + n > max_bytes) too_big = true;
        else bytes.insert(bytes.end(), chunk, chunk + n);
      } else if (messages.size() < 4096) {
        messages.append(reinterpret_cast<const char*>(chunk), n);
      }
    }
  }
  if (too_big) ::kill(pid, SIGKILL);
  for (auto& f : fds)
    if (f.fd >= 0) ::close(f.fd);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  DDPM_CHECK(!too_big, "gzip: '" << path << "' decompresses to more than " << max_bytes
                                 << " bytes; that is not the expected dataset file");
  // gzip's message on one line.
  for (char& c : messages)
    if (c == '\n' || c == '\r') c = ' ';
  size_t first = messages.find_first_not_of(' '), last = messages.find_last_not_of(' ');
  messages = first == std::string::npos ? "" : messages.substr(first, last - first + 1);
  DDPM_CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0,
             "gzip: 'gzip -dc' failed on '" << path << "' ("
                                            << (WIFEXITED(status) ? "exit status " + std::to_string(WEXITSTATUS(status))
                                                                  : std::string("killed by a signal"))
                                            << (messages.empty() ? "" : ": " + messages)
                                            << "); the file is corrupt or truncated: download it again");
  return bytes;
}

std::vector<uint8_t> read_file_maybe_gzip(const std::string& path, size_t max_bytes) {
  bool gz = path.size() >= 3 && path.compare(path.size() - 3, 3, ".gz") == 0;
  return gz ? read_gzip_file(path, max_bytes) : read_file_bytes(path);
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
    DDPM_FAIL("atomic write: renaming '" << temp_path_ << "' to '" << path_ << "' failed: " << reason
                                          << "; check that the folder exists and is writable");
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
