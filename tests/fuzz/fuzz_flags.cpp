// libFuzzer harness: the command-line flag parser (ddpm/app/flags.h).
//
// The input is split at NUL bytes into argv words (at most 64) and parsed against one
// flag of each kind, with names that share prefixes ("--no-" negation, "did you mean").
// Only ddpm::Error may escape: anything else, a crash or a sanitizer report is a finding.
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "ddpm/core/check.h"
#include "ddpm/app/flags.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::vector<std::string> args(1);
  for (size_t i = 0; i < size && args.size() <= 64; i++) {
    if (data[i] == 0) args.emplace_back();
    else args.back() += static_cast<char>(data[i]);
  }
  int64_t steps = 10, seed = 0;
  double lr = 1e-3;
  std::string out = "out";
  bool conditional = false, ema = true;
  ddpm::Flags flags("fuzz", "Fuzzing the flag parser.");
  flags.add("--steps", &steps, "an integer");
  flags.add("--seed", &seed, "another integer");
  flags.add("--lr", &lr, "a float");
  flags.add("--out", &out, "a string");
  flags.add("--conditional", &conditional, "a bool");
  flags.add("--ema", &ema, "a bool whose name prefixes nothing");
  try {
    flags.parse(args);
    (void)flags.given("--steps");
  } catch (const ddpm::Error&) {
  }
  volatile size_t n = flags.help().size();
  (void)n;
  // argc/argv form too (argv[0] is the program name, so skip the first word).
  std::vector<const char*> argv;
  for (const std::string& a : args) argv.push_back(a.c_str());
  try {
    flags.parse(static_cast<int>(argv.size()), argv.data());
  } catch (const ddpm::Error&) {
  }
  return 0;
}
