// tests/memory_limit.h: run a reader in a child process under a memory limit, so that a
// reader that allocates before it checks ends in std::bad_alloc (or a kill) in the child
// instead of taking the machine's memory, and the test sees which.
//
//   LimitedRun r = run_with_memory_limit([] { load_safetensors("/dev/zero"); });
//   check_clean_error(r, "'/dev/zero' is a character device");  // a ddpm::Error saying this
//
// The child's address space (RLIMIT_AS, what `ulimit -v` sets) is capped at its size at
// the fork plus 512 MiB: room for any reader that checks sizes first, far less than any
// of the hostile inputs would take. A child still running after 120 s is killed.
//
// Under AddressSanitizer RLIMIT_AS cannot be used: ASan reserves terabytes of virtual
// memory up front, so the child runs without the limit. The point there is only that
// the error is clean (and ASan reports a huge allocation by itself).
#pragma once

#include <doctest/doctest.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <exception>
#include <functional>
#include <new>
#include <string>

#include "ddpm/core/check.h"

#if defined(__SANITIZE_ADDRESS__)
#define DDPM_TEST_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define DDPM_TEST_ASAN 1
#endif
#endif
#ifndef DDPM_TEST_ASAN
#define DDPM_TEST_ASAN 0
#endif

namespace ddpm {
namespace testing {

constexpr uint64_t kMemoryLimitHeadroom = uint64_t(512) << 20;
constexpr bool kMemoryLimitApplies = !DDPM_TEST_ASAN;

struct LimitedRun {
  enum Outcome { error, returned, bad_alloc, other_exception, killed, failed_to_run } outcome = failed_to_run;
  std::string message;  // the exception's what(), or the signal
  uint64_t limit = 0;   // the child's RLIMIT_AS in bytes; 0 when none (ASan)

  bool ended_with_error() const { return outcome == error; }
  std::string describe() const {
    static const char* names[] = {"a ddpm::Error", "returned without an error", "std::bad_alloc",
                                  "another exception", "killed by a signal", "could not be run"};
    return std::string("the child ") + names[outcome] + (message.empty() ? "" : ": " + message) +
           (limit ? " (memory limit " + std::to_string(limit >> 20) + " MiB)" : " (no memory limit: ASan)");
  }
};

// The process's address space now, from /proc/self/statm (its first field, in pages).
inline uint64_t address_space_bytes() {
  unsigned long long pages = 0;
  if (std::FILE* f = std::fopen("/proc/self/statm", "r")) {
    if (std::fscanf(f, "%llu", &pages) != 1) pages = 0;
    std::fclose(f);
  }
  return static_cast<uint64_t>(pages) * static_cast<uint64_t>(sysconf(_SC_PAGESIZE));
}

inline LimitedRun run_with_memory_limit(const std::function<void()>& body) {
  LimitedRun run;
  int fds[2];
  if (pipe(fds) != 0) return run;
  std::fflush(nullptr);  // nothing buffered is written twice
  const uint64_t limit = kMemoryLimitApplies ? address_space_bytes() + kMemoryLimitHeadroom : 0;
  pid_t pid = fork();
  if (pid < 0) {
    close(fds[0]), close(fds[1]);
    return run;
  }
  if (pid == 0) {  // the child: only the body, then _exit (no doctest teardown, no atexit)
    close(fds[0]);
    alarm(120);
    if (limit) {
      struct rlimit r = {limit, limit};
      if (setrlimit(RLIMIT_AS, &r) != 0) _exit(LimitedRun::failed_to_run);
    }
    int code = LimitedRun::returned;
    std::string message;
    try {
      body();
    } catch (const Error& e) {
      code = LimitedRun::error, message = e.what();
    } catch (const std::bad_alloc& e) {
      code = LimitedRun::bad_alloc, message = e.what();
    } catch (const std::exception& e) {
      code = LimitedRun::other_exception, message = e.what();
    } catch (...) {
      code = LimitedRun::other_exception;
    }
    for (size_t done = 0; done < message.size();) {
      ssize_t n = write(fds[1], message.data() + done, message.size() - done);
      if (n <= 0) break;
      done += static_cast<size_t>(n);
    }
    _exit(code);
  }
  close(fds[1]);
  char chunk[4096];
  for (;;) {
    ssize_t n = read(fds[0], chunk, sizeof(chunk));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    run.message.append(chunk, static_cast<size_t>(n));
  }
  close(fds[0]);
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  run.limit = limit;
  if (WIFSIGNALED(status)) {
    run.outcome = LimitedRun::killed;
    run.message = std::string("signal ") + std::to_string(WTERMSIG(status)) + " (" + strsignal(WTERMSIG(status)) + ")";
  } else if (WIFEXITED(status) && WEXITSTATUS(status) <= LimitedRun::failed_to_run) {
    run.outcome = static_cast<LimitedRun::Outcome>(WEXITSTATUS(status));
  }
  return run;
}

// The child ended with a ddpm::Error whose message contains `expected`; a failure shows
// how it ended instead.
inline void check_clean_error(const LimitedRun& r, const std::string& expected) {
  INFO(r.describe());
  CHECK(r.ended_with_error());
  CHECK(r.message.find(expected) != std::string::npos);
}

}  // namespace testing
}  // namespace ddpm
