#include "ddpm/app/run_folder.h"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <ctime>

#include "ddpm/core/check.h"

namespace ddpm {

namespace {

const char* kLockName = ".lock";

std::vector<std::string> names_in(const std::string& dir) {  // "." and ".." left out
  std::vector<std::string> names;
  if (DIR* d = opendir(dir.c_str())) {
    while (dirent* e = readdir(d)) {
      std::string n = e->d_name;
      if (n != "." && n != "..") names.push_back(n);
    }
    closedir(d);
  }
  std::sort(names.begin(), names.end());
  return names;
}

bool is_checkpoint_name(const std::string& n) {
  // "ckpt-" + 8 digits + ".safetensors" (25 characters); not the writer's temp files.
  return n.size() == 25 && n.compare(0, 5, "ckpt-") == 0 && n.compare(13, 12, ".safetensors") == 0 &&
         n.find_first_not_of("0123456789", 5) == 13;
}

bool is_figure_name(const std::string& n) {  // what ./train_mnist draws besides checkpoints
  auto ends_with = [&](const char* s) {
    const size_t k = std::strlen(s);
    return n.size() >= k && n.compare(n.size() - k, k, s) == 0;
  };
  return n == "loss.svg" || n == "samples.png" || (n.compare(0, 8, "samples-") == 0 && ends_with(".png"));
}

std::string base_name(const std::string& path) {
  const size_t slash = path.rfind('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

std::string parent_of(const std::string& path) {
  std::string p = path;
  while (p.size() > 1 && p.back() == '/') p.pop_back();
  const size_t slash = p.rfind('/');
  if (slash == std::string::npos) return ".";
  return slash == 0 ? "/" : p.substr(0, slash);
}

// The pid written in an open lock file ("" if none could be read). The holder writes it
// just after taking the lock, so an empty file is retried briefly.
std::string lock_holder(int fd) {
  for (int attempt = 0; attempt < 50; attempt++) {
    char buf[32] = {0};
    const ssize_t n = ::pread(fd, buf, sizeof buf - 1, 0);
    std::string s = n > 0 ? std::string(buf, static_cast<size_t>(n)) : "";
    while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
    if (!s.empty() && s.find_first_not_of("0123456789") == std::string::npos) return s;
    ::usleep(10000);
  }
  return "";
}

}  // namespace

std::string checkpoint_path(const std::string& dir, int64_t step) {
  char name[64];
  std::snprintf(name, sizeof name, "ckpt-%08lld.safetensors", static_cast<long long>(step));
  return dir + "/" + name;
}

std::vector<std::string> list_checkpoints(const std::string& dir) {
  std::vector<std::string> found;
  for (const std::string& n : names_in(dir))
    if (is_checkpoint_name(n)) found.push_back(n);
  std::sort(found.rbegin(), found.rend());  // 8 digits: name order is step order
  for (auto& n : found) n = dir + "/" + n;
  return found;
}

int64_t checkpoint_step(const std::string& path) {
  const std::string n = base_name(path);
  DDPM_CHECK(is_checkpoint_name(n), "checkpoint_step: '" << path << "' is not named ckpt-<8 digits>.safetensors");
  return std::stoll(n.substr(5, 8));
}

bool ensure_writable_dir(const std::string& dir, const std::string& flag) {
  DDPM_CHECK(!dir.empty(), flag << " is empty: pass a folder for the output");
  bool created = false;
  if (::mkdir(dir.c_str(), 0755) == 0) {
    created = true;
  } else if (errno == ENOENT) {
    DDPM_FAIL("cannot create the output folder '" << dir << "' (" << flag << "): its parent folder '" << parent_of(dir)
                                                  << "' does not exist; create it first (mkdir -p " << parent_of(dir)
                                                  << ") or choose another " << flag);
  } else if (errno == ENOTDIR) {
    DDPM_FAIL("cannot create the output folder '" << dir << "' (" << flag
                                                  << "): a part of that path is a file, not a folder; choose another "
                                                  << flag);
  } else if (errno != EEXIST) {
    DDPM_FAIL("cannot create the output folder '" << dir << "' (" << flag << "): " << std::strerror(errno)
                                                  << "; choose a writable " << flag << " folder");
  }
  struct stat st;
  DDPM_CHECK(::stat(dir.c_str(), &st) == 0 && S_ISDIR(st.st_mode),
             flag << " '" << dir << "' exists and is not a folder; remove it or choose another " << flag);
  // Try it: root writes into a folder whatever its permission bits say, so only a real
  // file tells (and a read-only filesystem refuses root too). The name is a temp name of
  // this pid, so a crash here leaves a file that remove_stale_temp_files cleans up.
  const std::string probe = dir + "/.write-test.tmp." + std::to_string(::getpid());
  const int fd = ::open(probe.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) {
    const std::string reason = std::strerror(errno);
    if (created) ::rmdir(dir.c_str());
    DDPM_FAIL("the output folder '" << dir << "' (" << flag << ") is not writable: cannot create a file in it: " << reason
                                    << "; make it writable or choose another " << flag);
  }
  ::close(fd);
  ::unlink(probe.c_str());
  return created;
}

std::vector<std::string> remove_stale_temp_files(const std::string& dir) {
  std::vector<std::string> removed;
  for (const std::string& n : names_in(dir)) {
    const size_t at = n.rfind(".tmp.");
    if (at == std::string::npos || at == 0) continue;
    const std::string pid_text = n.substr(at + 5);
    if (pid_text.empty() || pid_text.size() > 9 || pid_text.find_first_not_of("0123456789") != std::string::npos)
      continue;
    const pid_t pid = static_cast<pid_t>(std::stol(pid_text));
    // Only when no such process exists (ESRCH): a live one, even another user's (EPERM),
    // may still be writing it.
    if (pid <= 0 || ::kill(pid, 0) == 0 || errno != ESRCH) continue;
    const std::string path = dir + "/" + n;
    struct stat st;
    if (::lstat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode) && ::unlink(path.c_str()) == 0) removed.push_back(n);
  }
  return removed;
}

RunFolder::RunFolder(const std::string& dir, const std::string& flag) : dir_(dir), flag_(flag) {
  while (dir_.size() > 1 && dir_.back() == '/') dir_.pop_back();
  created_ = ensure_writable_dir(dir_, flag_);
  const std::string lock_path = dir_ + "/" + kLockName;
  // flock on the lock file. It is never removed while in use, but the destructor of a
  // RunFolder that made the folder removes it with the folder: a lock taken on a file that
  // was unlinked meanwhile guards nothing, so check that the path still names our file.
  for (int attempt = 0; lock_fd_ < 0; attempt++) {
    const int fd = ::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0 && created_) ::rmdir(dir_.c_str());
    DDPM_CHECK(fd >= 0, "cannot open the lock file '" << lock_path << "': " << std::strerror(errno)
                                                      << "; make the folder writable or choose another " << flag_);
    if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
      const int err = errno;
      const std::string pid = err == EWOULDBLOCK ? lock_holder(fd) : "";
      ::close(fd);
      DDPM_CHECK(err == EWOULDBLOCK, "cannot lock '" << lock_path << "': " << std::strerror(err));
      DDPM_FAIL("another trainer" << (pid.empty() ? std::string() : " (pid " + pid + ")") << " is writing into '"
                                  << dir_ << "' (it holds " << lock_path
                                  << "); two runs in one folder would destroy each other's checkpoints. Wait until it "
                                     "has finished (or stop it), or choose another "
                                  << flag_);
    }
    struct stat held, named;
    if (::fstat(fd, &held) == 0 && ::stat(lock_path.c_str(), &named) == 0 && held.st_ino == named.st_ino &&
        held.st_dev == named.st_dev) {
      lock_fd_ = fd;
    } else {
      ::close(fd);
      DDPM_CHECK(attempt < 10, "cannot lock '" << lock_path << "': it keeps being replaced");
    }
  }
  const std::string pid = std::to_string(::getpid()) + "\n";
  if (::ftruncate(lock_fd_, 0) != 0 || ::pwrite(lock_fd_, pid.data(), pid.size(), 0) != static_cast<ssize_t>(pid.size())) {
    // Only the message of a second trainer loses its pid; the lock itself holds.
  }
  remove_stale_temp_files(dir_);
}

RunFolder::~RunFolder() {
  if (lock_fd_ < 0) return;
  if (created_ && names_in(dir_) == std::vector<std::string>{kLockName}) {
    // Still locked: nobody else can have started writing here meanwhile.
    ::unlink((dir_ + "/" + kLockName).c_str());
    ::rmdir(dir_.c_str());
  }
  ::close(lock_fd_);  // releases the lock
}

std::string RunFolder::claim(int64_t start_step, bool resuming, bool overwrite) {
  std::vector<std::string> later;
  for (const std::string& c : list_checkpoints(dir_))
    if (checkpoint_step(c) > start_step) later.push_back(c);
  if (later.empty()) return "";
  std::string aside;
  for (int k = 1; aside.empty(); k++) {
    const std::string p = dir_ + "/previous-" + std::to_string(k);
    struct stat st;
    if (::lstat(p.c_str(), &st) != 0) aside = p;
  }
  if (!overwrite) {
    if (!resuming)
      DDPM_FAIL("'" << dir_ << "' already holds checkpoints of another run (" << later.size() << ", the newest "
                    << later.front() << "); a new run there would mix its checkpoints with them. To continue that run: "
                    << "--resume auto " << flag_ << " " << dir_ << "; to start a new run, choose another " << flag_
                    << " folder, or pass --overwrite to move the old run's checkpoints and figures into " << aside
                    << "/");
    DDPM_FAIL("'" << dir_ << "' holds " << later.size() << " checkpoint(s) after step " << start_step
                  << ", where this run resumes (the newest " << later.front()
                  << "); this run would replace them. To continue from the newest: --resume auto " << flag_ << " "
                  << dir_ << "; or choose another " << flag_ << " folder, or pass --overwrite to move them into "
                  << aside << "/");
  }
  std::vector<std::string> move;
  for (const std::string& c : later) move.push_back(base_name(c));
  if (!resuming)
    for (const std::string& n : names_in(dir_))
      if (is_figure_name(n)) move.push_back(n);
  DDPM_CHECK(::mkdir(aside.c_str(), 0755) == 0,
             "--overwrite: cannot create '" << aside << "' to move the old checkpoints into: " << std::strerror(errno));
  for (const std::string& n : move)
    DDPM_CHECK(::rename((dir_ + "/" + n).c_str(), (aside + "/" + n).c_str()) == 0,
               "--overwrite: cannot move '" << dir_ << "/" << n << "' into " << aside << "/: " << std::strerror(errno));
  return aside;
}

void RunFolder::wrote(const std::string& checkpoint) {
  if (std::find(written_.begin(), written_.end(), checkpoint) == written_.end()) written_.push_back(checkpoint);
}

std::vector<std::string> RunFolder::prune(int64_t keep, const std::string& newest) {
  DDPM_CHECK(keep >= 1, "prune: keep " << keep << " must be at least 1");
  std::vector<std::string> others;
  for (const std::string& c : written_)
    if (c != newest) others.push_back(c);
  std::sort(others.begin(), others.end(),
            [](const std::string& a, const std::string& b) { return checkpoint_step(a) > checkpoint_step(b); });
  std::vector<std::string> removed;
  for (size_t i = static_cast<size_t>(keep - 1); i < others.size(); i++)
    if (std::remove(others[i].c_str()) == 0 || errno == ENOENT) removed.push_back(others[i]);
  for (const std::string& r : removed) written_.erase(std::find(written_.begin(), written_.end(), r));
  return removed;
}

}  // namespace ddpm
