#include "ddpm/core/check.h"
#include "ddpm/app/flags.h"
#include "ddpm/core/parallel.h"
#include "tests/testing.h"

using namespace ddpm;

TEST_CASE("cli: flags parse in both forms, bools bare and negated, help lists defaults") {
  int64_t steps = 10;
  double lr = 2e-4;
  std::string model = "tiny";
  bool clip = false;
  Flags f("prog", "a test");
  f.add("--steps", &steps, "steps");
  f.add("--lr", &lr, "learning rate");
  f.add("--model", &model, "model");
  f.add("--clip", &clip, "clip x0");
  CHECK(f.parse({"--steps", "300", "--lr=1e-3", "--model", "small", "--clip"}));
  CHECK(steps == 300);
  CHECK(lr == 1e-3);
  CHECK(model == "small");
  CHECK(clip);
  CHECK(f.given("--steps"));
  CHECK(f.parse({"--no-clip"}));
  CHECK_FALSE(clip);
  CHECK_FALSE(f.parse({"--help"}));
  std::string h = f.help();
  CHECK(h.find("--steps") != std::string::npos);
  CHECK(h.find("(default: 10)") != std::string::npos);
}

TEST_CASE("cli: bad flags give clear errors") {
  int64_t steps = 10;
  double lr = 0.1;
  Flags f("prog", "a test");
  f.add("--steps", &steps, "steps");
  f.add("--lr", &lr, "learning rate");
  auto message = [&](const std::vector<std::string>& args) { return testing::error_of([&] { f.parse(args); }); };
  CHECK(message({"--stpes", "3"}).find("did you mean --steps") != std::string::npos);
  CHECK(message({"--steps", "3x"}).find("expects an integer") != std::string::npos);
  CHECK(message({"--steps", "99999999999999999999999"}).find("expects an integer") != std::string::npos);
  CHECK(message({"--lr", "nan"}).find("finite number") != std::string::npos);
  CHECK(message({"--lr"}).find("needs a value") != std::string::npos);
  CHECK(message({"steps"}).find("unexpected argument") != std::string::npos);
}

TEST_CASE("cli: --threads is checked against the pool's bound in one place, naming the flag") {
  CHECK(check_threads_flag(1) == 1);
  CHECK(check_threads_flag(kMaxThreads) == kMaxThreads);
  // Every tool's --threads goes through check_threads_flag; before it, ./sample and ./eval
  // failed inside set_num_threads with "set_num_threads: n = 300 ...".
  CHECK_THROWS_WITH_AS(check_threads_flag(300), doctest::Contains("--threads 300 not in 1..256"), Error);
  CHECK_THROWS_WITH_AS(check_threads_flag(0), doctest::Contains("--threads 0 not in 1..256"), Error);
  CHECK_THROWS_WITH_AS(check_threads_flag(int64_t(1) << 40), doctest::Contains("not in 1..256"), Error);
  CHECK(default_threads() >= 1);
  CHECK(default_threads() <= kMaxThreads);
}
