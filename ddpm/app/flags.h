// flags.h: command-line flags for the tools.
//
//   Flags flags("train_mnist", "Train a DDPM U-Net on MNIST.");
//   flags.add("--steps", &steps, "number of training steps");
//   flags.parse(argc, argv);     // throws ddpm::Error on a bad flag; --help sets help()
//
// Every flag takes a value as "--name value" or "--name=value"; bool flags also accept
// a bare "--name" (true) and "--no-name" (false). Integers and floats are parsed
// strictly (the whole word, in range, finite). An unknown flag's error suggests the
// closest known one. The help text lists every flag with its default.
#pragma once

#include <cstdint>
#include <cstdio>
#include <set>
#include <string>
#include <vector>

#include "ddpm/dist/communicator.h"

namespace ddpm {

class Flags {
 public:
  Flags(std::string program, std::string description);

  void add(const std::string& name, int64_t* value, const std::string& help);
  void add(const std::string& name, double* value, const std::string& help);
  void add(const std::string& name, std::string* value, const std::string& help);
  void add(const std::string& name, bool* value, const std::string& help);

  // Parses argv[1..]; returns false if --help was given (help() has the text).
  bool parse(int argc, const char* const* argv);
  bool parse(const std::vector<std::string>& args);
  std::string help() const;
  // True if the flag was given on the command line (not just defaulted).
  bool given(const std::string& name) const;
  // From now on, parse() also adds the name of each flag it sets to *names (a tool's options
  // struct keeps them), for checks that depend on whether a flag was given rather than on
  // its value ("--ddim-steps needs --sampler ddim").
  void record_given(std::set<std::string>* names) { given_names_ = names; }

 private:
  enum class Kind { integer, real, text, boolean };
  struct Flag {
    std::string name, help, default_text;
    Kind kind;
    void* target;
    bool given = false;
  };
  Flag* find(const std::string& name);
  void set(Flag& f, const std::string& value);
  std::string program_, description_;
  std::vector<Flag> flags_;
  std::set<std::string>* given_names_ = nullptr;
};

// The items of a comma-separated flag value ("0,0.5,2"), split as std::getline splits:
// "1,,2" has an empty item, a trailing comma adds none, "" has no items.
std::vector<std::string> split_commas(const std::string& text);

// --threads, the same in every tool. The default is the machine's cores, at most
// kMaxThreads (parallel.h: the pool's bound); check_threads_flag refuses a value outside
// 1..kMaxThreads naming the flag ("--threads 300 not in 1..256") and returns it as an int
// for set_num_threads.
int64_t default_threads();
int check_threads_flag(int64_t threads);

// The body of every tool's main(): returns run(argc, argv), or prints "error: <what>" to
// stderr and returns 1 when it throws.
int run_tool(int (*run)(int argc, char** argv), int argc, char** argv);
// The same for the tools whose work MPI ranks share (./train_mnist, ./sample, ./eval), with
// the process's communicator (world_communicator, made first thing in main). On one process
// it is run_tool above. Over R > 1 ranks only rank 0 prints: the others' stdout and stderr
// go to /dev/null. An error on any rank prints "error: <what>" (with "rank r of R: " when
// r > 0) and ends every rank with MPI_Abort, so that no rank waits forever in a collective
// for one that is gone. Another rank waits a second before it prints, so an error that
// every rank meets (a bad flag) is printed once, by rank 0, whose abort ends the rest.
int run_tool(int (*run)(int argc, char** argv, Communicator& comm), int argc, char** argv, Communicator& comm);

// The command line into `options` with its OptionsFlags (a Flags bound to it). False when
// --help was asked: the help is printed.
template <typename Options, typename OptionsFlags>
bool parse_options(int argc, char** argv, Options* options) {
  OptionsFlags flags(options);
  if (flags.parse(argc, argv)) return true;
  std::printf("%s", flags.help().c_str());
  return false;
}

// The run(argc, argv) of a tool whose work is Run(options): parses the command line
// (parse_options) and returns 0 when --help was asked, else Run(options). A tool's main is then
//   return run_tool(parse_and_run<ScheduleRun, ScheduleRunFlags, schedule_run>, argc, argv);
template <typename Options, typename OptionsFlags, int (*Run)(const Options&)>
int parse_and_run(int argc, char** argv) {
  Options options;
  return parse_options<Options, OptionsFlags>(argc, argv, &options) ? Run(options) : 0;
}
// The same with the ranks' communicator, for the run_tool above that takes it:
//   auto comm = world_communicator(&argc, &argv);
//   return run_tool(parse_and_run<SampleRun, SampleRunFlags, sample_run>, argc, argv, *comm);
template <typename Options, typename OptionsFlags, int (*Run)(const Options&, Communicator&)>
int parse_and_run(int argc, char** argv, Communicator& comm) {
  Options options;
  return parse_options<Options, OptionsFlags>(argc, argv, &options) ? Run(options, comm) : 0;
}

}  // namespace ddpm
