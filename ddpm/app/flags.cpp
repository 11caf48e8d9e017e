#include "ddpm/app/flags.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <sstream>
#include <thread>

#include "ddpm/core/check.h"
#include "ddpm/core/parallel.h"

namespace ddpm {

Flags::Flags(std::string program, std::string description)
    : program_(std::move(program)), description_(std::move(description)) {}

static std::string format_double(double v) {
  std::ostringstream os;
  os << v;
  return os.str();
}

void Flags::add(const std::string& name, int64_t* value, const std::string& help) {
  flags_.push_back(Flag{name, help, std::to_string(*value), Kind::integer, value});
}
void Flags::add(const std::string& name, double* value, const std::string& help) {
  flags_.push_back(Flag{name, help, format_double(*value), Kind::real, value});
}
void Flags::add(const std::string& name, std::string* value, const std::string& help) {
  flags_.push_back(Flag{name, help, value->empty() ? "\"\"" : *value, Kind::text, value});
}
void Flags::add(const std::string& name, bool* value, const std::string& help) {
  flags_.push_back(Flag{name, help, *value ? "true" : "false", Kind::boolean, value});
}

Flags::Flag* Flags::find(const std::string& name) {
  for (Flag& f : flags_)
    if (f.name == name) return &f;
  return nullptr;
}

bool Flags::given(const std::string& name) const {
  for (const Flag& f : flags_)
    if (f.name == name) return f.given;
  return false;
}

// Levenshtein distance, for "did you mean".
static size_t edit_distance(const std::string& a, const std::string& b) {
  std::vector<size_t> prev(b.size() + 1), cur(b.size() + 1);
  for (size_t j = 0; j <= b.size(); j++) prev[j] = j;
  for (size_t i = 1; i <= a.size(); i++) {
    cur[0] = i;
    for (size_t j = 1; j <= b.size(); j++)
      cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] != b[j - 1])});
    std::swap(prev, cur);
  }
  return prev[b.size()];
}

void Flags::set(Flag& f, const std::string& value) {
  switch (f.kind) {
    case Kind::integer: {
      errno = 0;
      char* end = nullptr;
      long long v = std::strtoll(value.c_str(), &end, 10);
      DDPM_CHECK(!value.empty() && end && *end == '\0' && errno != ERANGE,
                 f.name << " expects an integer, got '" << value << "' (see " << program_ << " --help)");
      *static_cast<int64_t*>(f.target) = v;
      break;
    }
    case Kind::real: {
      errno = 0;
      char* end = nullptr;
      double v = std::strtod(value.c_str(), &end);
      DDPM_CHECK(!value.empty() && end && *end == '\0' && errno != ERANGE && std::isfinite(v),
                 f.name << " expects a finite number, got '" << value << "' (see " << program_ << " --help)");
      *static_cast<double*>(f.target) = v;
      break;
    }
    case Kind::text:
      *static_cast<std::string*>(f.target) = value;
      break;
    case Kind::boolean:
      if (value == "true" || value == "1" || value == "yes") {
        *static_cast<bool*>(f.target) = true;
      } else if (value == "false" || value == "0" || value == "no") {
        *static_cast<bool*>(f.target) = false;
      } else {
        DDPM_FAIL(f.name << " expects true or false, got '" << value << "'");
      }
      break;
  }
  f.given = true;
  if (given_names_) given_names_->insert(f.name);
}

bool Flags::parse(int argc, const char* const* argv) {
  std::vector<std::string> args;
  for (int i = 1; i < argc; i++) args.emplace_back(argv[i]);
  return parse(args);
}

bool Flags::parse(const std::vector<std::string>& args) {
  for (size_t i = 0; i < args.size(); i++) {
    std::string arg = args[i];
    if (arg == "--help" || arg == "-h") return false;
    DDPM_CHECK(arg.size() > 2 && arg.compare(0, 2, "--") == 0,
               "unexpected argument '" << arg << "': flags start with -- (see " << program_ << " --help)");
    std::string name = arg, value;
    bool has_value = false;
    size_t eq = arg.find('=');
    if (eq != std::string::npos) {
      name = arg.substr(0, eq);
      value = arg.substr(eq + 1);
      has_value = true;
    }
    Flag* f = find(name);
    if (!f && !has_value && name.compare(0, 5, "--no-") == 0) {
      Flag* b = find("--" + name.substr(5));
      if (b && b->kind == Kind::boolean) {
        set(*b, "false");
        continue;
      }
    }
    if (!f) {
      std::string best;
      size_t best_d = 4;
      for (const Flag& g : flags_) {
        size_t d = edit_distance(name, g.name);
        if (d < best_d) best_d = d, best = g.name;
      }
      DDPM_FAIL("unknown flag '" << name << "'" << (best.empty() ? "" : "; did you mean " + best + "?") << " (see "
                                 << program_ << " --help)");
    }
    if (!has_value) {
      if (f->kind == Kind::boolean && (i + 1 >= args.size() || args[i + 1].compare(0, 2, "--") == 0)) {
        value = "true";
      } else {
        DDPM_CHECK(i + 1 < args.size(), name << " needs a value (see " << program_ << " --help)");
        value = args[++i];
      }
    }
    set(*f, value);
  }
  return true;
}

std::string Flags::help() const {
  std::ostringstream os;
  os << "usage: " << program_ << " [flags]\n\n" << description_ << "\n\nflags:\n";
  size_t width = 0;
  for (const Flag& f : flags_) width = std::max(width, f.name.size());
  for (const Flag& f : flags_) {
    os << "  " << f.name << std::string(width - f.name.size() + 2, ' ') << f.help << " (default: " << f.default_text
       << ")\n";
  }
  return os.str();
}

std::vector<std::string> split_commas(const std::string& text) {
  std::vector<std::string> items;
  std::stringstream ss(text);
  for (std::string item; std::getline(ss, item, ',');) items.push_back(item);
  return items;
}

int64_t default_threads() {
  return std::min<int64_t>(kMaxThreads, std::max(1u, std::thread::hardware_concurrency()));
}

int check_threads_flag(int64_t threads) {
  DDPM_CHECK(threads >= 1 && threads <= kMaxThreads, "--threads " << threads << " not in 1.." << kMaxThreads);
  return static_cast<int>(threads);
}

int run_tool(int (*run)(int argc, char** argv), int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
}

int run_tool(int (*run)(int argc, char** argv, Communicator& comm), int argc, char** argv, Communicator& comm) {
  if (comm.size() == 1) {
    try {
      return run(argc, argv, comm);
    } catch (const std::exception& e) {
      std::fprintf(stderr, "error: %s\n", e.what());
      return 1;
    }
  }
  int errors = STDERR_FILENO;  // where this rank's own error goes
  if (comm.rank() != 0) {
    errors = ::dup(STDERR_FILENO);
    const int null = ::open("/dev/null", O_WRONLY | O_CLOEXEC);
    if (null >= 0) {
      ::dup2(null, STDOUT_FILENO);
      ::dup2(null, STDERR_FILENO);
      ::close(null);
    }
  }
  try {
    return run(argc, argv, comm);
  } catch (const std::exception& e) {
    // The job ends now; a signal from mpirun ends this rank at once from here on.
    std::signal(SIGINT, SIG_DFL);
    std::signal(SIGTERM, SIG_DFL);
    if (comm.rank() != 0) std::this_thread::sleep_for(std::chrono::seconds(1));
    std::string line = "error: ";
    if (comm.rank() != 0) line += "rank " + std::to_string(comm.rank()) + " of " + std::to_string(comm.size()) + ": ";
    line += e.what();
    line += "\n";
    std::fflush(stdout);
    if (::write(errors, line.data(), line.size()) < 0) {
      // nowhere left to say it; the exit code still does
    }
    comm.abort(1);
  }
  return 1;  // not reached: abort ends the process
}

}  // namespace ddpm
