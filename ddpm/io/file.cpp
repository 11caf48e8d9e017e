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

// What a non-regular file is, for the error that refuses it.
static const char* file_kind(mode_t mode) {
  if (S_ISDIR(mode)) return "a directory";
  if (S_ISCHR(mode)) return "a character device";
  if (S_ISBLK(mode)) return "a block device";
  if (S_ISFIFO(mode)) return "a pipe";
  if (S_ISSOCK(mode)) return "a socket";
  return "not a regular file";
}

InputFile::InputFile(const std::string& path) : path_(path) {
  // O_NONBLOCK: opening a pipe must not wait for a writer before it is refused below (for
  // a regular file the flag changes nothing).
  fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  DDPM_CHECK(fd_ >= 0, "read_file: cannot open '" << path << "': " << os_error() << "; check the path");
  struct stat st;
  if (::fstat(fd_, &st) != 0) {
    std::string reason = os_error();
    ::close(fd_);
    DDPM_FAIL("read_file: cannot inspect '" << path << "': " << reason);
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd_);
    DDPM_FAIL("read_file: '" << path << "' is " << file_kind(st.st_mode)
                             << ", not a regular file: its size is unknown, so nothing read from it could be "
                                "checked first; pass a file");
  }
  size_ = static_cast<uint64_t>(st.st_size);
}

InputFile::~InputFile() {
  if (fd_ >= 0) ::close(fd_);
}

void InputFile::read_at(uint64_t offset, void* out, size_t n) const {
  DDPM_CHECK(offset <= size_ && n <= size_ - offset,
             "read_file: '" << path_ << "' is truncated at byte " << size_ << ": bytes [" << offset << ", "
                            << offset + n << ") are beyond its end");
  uint8_t* p = static_cast<uint8_t*>(out);
  while (n > 0) {
    // At most 1 GiB per call: Linux reads at most ~2 GiB at once anyway.
    size_t want = n < (size_t(1) << 30) ? n : (size_t(1) << 30);
    ssize_t got = ::pread(fd_, p, want, static_cast<off_t>(offset));
    if (got < 0 && errno == EINTR) continue;
    DDPM_CHECK(got >= 0, "read_file: error reading '" << path_ << "' at byte " << offset << ": " << os_error());
    DDPM_CHECK(got > 0, "read_file: '" << path_ << "' is truncated at byte " << offset
                                       << ": it shrank while being read; is another program writing it?");
    p += got;
    offset += static_cast<uint64_t>(got);
    n -= static_cast<size_t>(got);
  }
}

std::vector<uint8_t> read_file_bytes(const std::string& path, size_t max_bytes) {
  InputFile file(path);
  DDPM_CHECK(file.size() <= max_bytes, "read_file: '" << path << "' is " << file.size() << " bytes, more than the "
                                                      << max_bytes << " this reader accepts; is it the right file?");
  std::vector<uint8_t> bytes(static_cast<size_t>(file.size()));
  file.read_at(0, bytes.data(), bytes.size());
  return bytes;
}

GzipStream::GzipStream(const std::string& path) : path_(path) {
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
  pid_ = pid, out_fd_ = out_pipe[0], err_fd_ = err_pipe[0];
}

GzipStream::~GzipStream() { finish(/*stop=*/true); }  // never throws when stopping

size_t GzipStream::read(void* out, size_t n) {
  // Read stdout and stderr together so that neither pipe fills up and blocks gzip.
  uint8_t* p = static_cast<uint8_t*>(out);
  size_t done = 0;
  while (done < n && out_fd_ >= 0) {
    struct pollfd fds[2] = {{out_fd_, POLLIN, 0}, {err_fd_, POLLIN, 0}};
    if (::poll(fds, err_fd_ >= 0 ? 2 : 1, -1) < 0) {
      if (errno == EINTR) continue;
      DDPM_FAIL("gzip: poll failed while decompressing '" << path_ << "': " << os_error());
    }
    if (err_fd_ >= 0 && (fds[1].revents & (POLLIN | POLLHUP | POLLERR))) {
      char chunk[4096];
      ssize_t got = ::read(err_fd_, chunk, sizeof(chunk));
      if (got < 0 && errno == EINTR) continue;
      if (got <= 0) {
        ::close(err_fd_);
        err_fd_ = -1;
      } else if (messages_.size() < 4096) {
        messages_.append(chunk, static_cast<size_t>(got));
      }
    }
    if (fds[0].revents & (POLLIN | POLLHUP | POLLERR)) {
      ssize_t got = ::read(out_fd_, p + done, n - done);
      if (got < 0 && errno == EINTR) continue;
      if (got <= 0) {
        ::close(out_fd_);
        out_fd_ = -1;
      } else {
        done += static_cast<size_t>(got);
      }
    }
  }
  position_ += done;
  return done;
}

void GzipStream::finish(bool stop) {
  if (pid_ < 0) return;
  if (stop) ::kill(pid_, SIGKILL);
  // Output not read by now is unwanted: closing the pipe ends a gzip still writing
  // (SIGPIPE, reported as a failure) rather than leaving it blocked.
  if (out_fd_ >= 0) ::close(out_fd_), out_fd_ = -1;
  // The rest of stderr (gzip's message), unless it was stopped.
  while (!stop && err_fd_ >= 0) {
    char chunk[4096];
    ssize_t got = ::read(err_fd_, chunk, sizeof(chunk));
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) break;
    if (messages_.size() < 4096) messages_.append(chunk, static_cast<size_t>(got));
  }
  if (err_fd_ >= 0) ::close(err_fd_), err_fd_ = -1;
  int status = 0;
  while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
  }
  pid_ = -1;
  if (stop) return;
  // gzip's message on one line.
  for (char& c : messages_)
    if (c == '\n' || c == '\r') c = ' ';
  size_t first = messages_.find_first_not_of(' '), last = messages_.find_last_not_of(' ');
  std::string message = first == std::string::npos ? "" : messages_.substr(first, last - first + 1);
  DDPM_CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0,
             "gzip: 'gzip -dc' failed on '" << path_ << "' ("
                                            << (WIFEXITED(status) ? "exit status " + std::to_string(WEXITSTATUS(status))
                                                                  : std::string("killed by a signal"))
                                            << (message.empty() ? "" : ": " + message)
                                            << "); the file is corrupt or truncated: download it again");
}

std::vector<uint8_t> read_gzip_file(const std::string& path, size_t max_bytes) {
  GzipStream gz(path);
  std::vector<uint8_t> bytes;
  uint8_t chunk[1 << 16];
  for (;;) {
    size_t got = gz.read(chunk, sizeof(chunk));
    if (bytes.size() + got > max_bytes) {
      gz.finish(/*stop=*/true);
      DDPM_FAIL("gzip: '" << path << "' decompresses to more than " << max_bytes
                          << " bytes; that is not the expected dataset file");
    }
    bytes.insert(bytes.end(), chunk, chunk + got);
    if (got < sizeof(chunk)) break;
  }
  gz.finish();
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
