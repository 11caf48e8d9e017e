// Micro-batches (--micro-batch) and ranks (Trainer::distribute): one micro-batch is the
// default path's bits; micro-batches draw the whole batch's randomness; R ranks (test
// threads standing in for MPI ranks, tests/dist/thread_ranks.h) give one process's bits for
// every R dividing K, resume across R, and stop together on a NaN or a stop request.
#include <atomic>
#include <cmath>
#include <vector>

#include "ddpm/core/check.h"
#include "ddpm/core/parallel.h"
#include "ddpm/io/safetensors.h"
#include "ddpm/train/trainer.h"
#include "tests/bars.h"
#include "tests/dist/thread_ranks.h"
#include "tests/testing.h"

using namespace ddpm;
using testing::bars;
using testing::bars_config;

namespace {

// batch 12 in micro-batches of 1: K = 12, which 1, 2, 3, 4 (and 6, 12) ranks divide; dropout
// and the label drop on, so every key of the step is exercised.
TrainConfig split_config() {
  TrainConfig c = bars_config();
  c.batch = 12;
  c.micro_batch = 1;
  c.dropout = 0.1;
  c.conditional = true;
  return c;
}

std::vector<float> grads(Trainer& t) {
  std::vector<float> g;
  for (Parameter* p : t.model().parameters()) {
    auto v = p->var->grad.to_vector();
    g.insert(g.end(), v.begin(), v.end());
  }
  return g;
}

struct RunResult {
  std::vector<double> losses;
  uint64_t hash = 0;
};

// `steps` steps of `config` over R test ranks, every rank checked to end in the same state.
RunResult run_ranks(const TrainConfig& config, int R, int steps) {
  set_num_threads(1);
  testing::ThreadRanks ranks(R);
  std::vector<RunResult> out(static_cast<size_t>(R));
  ranks.run([&](Communicator& comm) {
    Trainer trainer(config, bars());
    trainer.distribute(comm);
    RunResult& r = out[comm.rank()];
    for (int i = 0; i < steps; i++) r.losses.push_back(trainer.step());
    r.hash = trainer.state_hash();
  });
  for (int r = 1; r < R; r++) {
    REQUIRE(out[r].losses == out[0].losses);
    REQUIRE(out[r].hash == out[0].hash);
  }
  return out[0];
}

}  // namespace

TEST_CASE("micro_batch: one micro-batch of the whole batch is the default path, bit for bit") {
  set_num_threads(1);
  TrainConfig whole = bars_config();
  TrainConfig one = whole;
  one.micro_batch = whole.batch;  // K = 1
  Trainer a(whole, bars()), b(one, bars());
  CHECK(b.micro_batches() == 1);
  for (int i = 0; i < 3; i++) CHECK(a.step() == b.step());
  CHECK(a.state_hash() == b.state_hash());
  // micro_batch 0 writes no train.micro_batch: a default run's checkpoint is as before.
  CHECK(whole.to_metadata().count("train.micro_batch") == 0);
  CHECK(one.to_metadata().at("train.micro_batch") == "8");
}

TEST_CASE("micro_batch: micro-batches draw the whole batch's t, eps, dropout masks and label drops") {
  set_num_threads(1);
  TrainConfig whole = split_config();
  whole.micro_batch = 0;
  for (int64_t m : {1, 4, 6}) {
    TrainConfig split = split_config();
    split.micro_batch = m;
    Trainer a(whole, bars()), b(split, bars());
    const double la = a.step(), lb = b.step();
    CAPTURE(m);
    // The same samples, t, eps and masks: the mean of the micro-batch means is the batch
    // mean up to float rounding, and so is the gradient (other masks or t would move both
    // by far more).
    CHECK(lb == doctest::Approx(la).epsilon(1e-6));
    const std::vector<float> ga = grads(a), gb = grads(b);
    testing::check_allclose("gradient", gb.data(), ga.data(), static_cast<int64_t>(ga.size()), 1e-6, 1e-4);
  }
}

TEST_CASE("micro_batch: 1 to 4 ranks give the bits of one process at any thread count") {
  for (const char* option : {"default objective", "importance-sampled t and the weighted loss"}) {
    TrainConfig c = split_config();
    if (std::string(option) != "default objective") {
      c.timesteps = TimestepSampling::importance;
      c.loss = LossType::weighted;
    }
    CAPTURE(option);
    set_num_threads(2);
    Trainer single(c, bars());
    RunResult one;
    for (int i = 0; i < 3; i++) one.losses.push_back(single.step());
    one.hash = single.state_hash();
    for (int R : {1, 2, 3, 4}) {
      CAPTURE(R);
      const RunResult got = run_ranks(c, R, 3);
      CHECK(got.losses == one.losses);
      CHECK(got.hash == one.hash);
    }
  }
  set_num_threads(1);
}

TEST_CASE("micro_batch: a checkpoint from 2 ranks resumes on 3, bit for bit") {
  const TrainConfig c = split_config();
  const RunResult straight = run_ranks(c, 1, 4);
  set_num_threads(1);
  std::vector<uint8_t> bytes;
  testing::ThreadRanks two(2);
  two.run([&](Communicator& comm) {
    Trainer t(c, bars());
    t.distribute(comm);
    t.step();
    t.step();
    if (comm.rank() == 0) bytes = t.checkpoint_bytes();
  });
  testing::ThreadRanks three(3);
  std::vector<uint64_t> hashes(3);
  three.run([&](Communicator& comm) {
    auto t = trainer_from_checkpoint(parse_safetensors(bytes.data(), bytes.size(), "two ranks' checkpoint"), bars());
    t->distribute(comm);
    t->step();
    t->step();
    hashes[comm.rank()] = t->state_hash();
  });
  for (uint64_t h : hashes) CHECK(h == straight.hash);
}

TEST_CASE("micro_batch: a split the ranks cannot share evenly is refused, naming the fix") {
  SingleProcess one;
  testing::ThreadRanks ranks(2);
  ranks.run([&](Communicator& comm) {
    Trainer whole(bars_config(), bars());  // micro_batch 0: one piece
    CHECK_THROWS_WITH_AS(whole.distribute(comm),
                         doctest::Contains("--micro-batch 0 runs the whole batch as one piece, which 2 ranks cannot "
                                           "share; give --micro-batch M with 8/M a multiple of 2, e.g. --micro-batch 4"),
                         Error);
    TrainConfig c = split_config();
    c.micro_batch = 4;  // K = 3
    Trainer three(c, bars());
    CHECK_THROWS_WITH_AS(three.distribute(comm), doctest::Contains("is 3 micro-batches, which 2 ranks cannot share evenly"),
                         Error);
  });
  TrainConfig odd = split_config();
  odd.micro_batch = 5;  // 12 is not 5s
  CHECK_THROWS_WITH_AS(odd.validate(), doctest::Contains("--batch 12 is not a whole number of --micro-batch 5"), Error);
  Trainer fine(split_config(), bars());
  fine.distribute(one);  // one process takes any split
}

TEST_CASE("micro_batch: a NaN on one rank stops every rank with that rank's report, nothing updated") {
  set_num_threads(1);
  testing::ThreadRanks ranks(3);
  std::vector<std::string> reports(3);
  std::vector<int64_t> steps(3);
  std::vector<uint64_t> before(3), after(3);
  ranks.run([&](Communicator& comm) {
    Trainer t(split_config(), bars());
    t.distribute(comm);
    t.inject_nan(2, 10);  // sample 10 of step 2: micro-batch 10, rank 2's (micro-batches 8..11)
    t.step();
    before[comm.rank()] = t.state_hash();
    try {
      t.step();
    } catch (const NonFiniteError& e) {
      reports[comm.rank()] = e.what();
    }
    steps[comm.rank()] = t.steps_done();
    after[comm.rank()] = t.state_hash();
  });
  for (int r = 0; r < 3; r++) {
    CHECK(reports[r] == reports[2]);
    CHECK(steps[r] == 1);
    CHECK(after[r] == before[r]);
  }
  CHECK(reports[0].find("step 2 (micro-batch 10 of 12, samples 10..10 of the batch): the loss is nan") != std::string::npos);
  CHECK(reports[0].find("First non-finite value: op #") != std::string::npos);
}

TEST_CASE("micro_batch: a stop asked on one rank abandons the step on every rank, which then resumes exactly") {
  const RunResult straight = run_ranks(split_config(), 1, 3);
  set_num_threads(1);
  testing::ThreadRanks ranks(3);
  std::vector<int> interrupted(3, 0);
  std::vector<uint64_t> hashes(3);
  ranks.run([&](Communicator& comm) {
    Trainer t(split_config(), bars());
    t.distribute(comm);
    std::atomic<bool> stop{false};
    t.set_stop_flag(&stop);
    t.step();
    if (comm.rank() == 1) stop = true;  // Ctrl-C reached rank 1 only
    try {
      t.step();
    } catch (const StepInterrupted&) {
      interrupted[comm.rank()] = 1;
    }
    REQUIRE(t.steps_done() == 1);
    stop = false;
    t.step();  // the abandoned step again: the data cursor was put back
    t.step();
    hashes[comm.rank()] = t.state_hash();
  });
  for (int r = 0; r < 3; r++) {
    CHECK(interrupted[r] == 1);
    CHECK(hashes[r] == straight.hash);
  }
}
