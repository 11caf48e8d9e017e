// UNetInference against UNet::forward (eval mode, no-grad tape): bit for bit, for every
// config the tools meet (tiny, small, the minimal test model conditional and with a learned
// variance), at 1, 2 and 3 threads.
#include <cmath>
#include <cstring>
#include <string>

#include "ddpm/core/check.h"
#include "ddpm/core/parallel.h"
#include "ddpm/model/unet.h"
#include "ddpm/model/unet_inference.h"
#include "tests/testing.h"

using namespace ddpm;
using testing::randn;

namespace {

// Every parameter moved off its initialization (the zero-initialized convs included), so
// every path of the network reaches the output.
void perturb(UNet& net, uint64_t seed) {
  Generator gen(seed);
  for (Parameter* p : net.parameters())
    for (int64_t i = 0; i < p->var->value.numel(); i++) p->var->value[i] += 0.05f * gen.normal();
}

Tensor tape_forward(UNet& net, const Tensor& x, const std::vector<int64_t>& t, const std::vector<int64_t>* labels) {
  Tape tape = Tape::no_grad();
  return net.forward(tape, constant(x), t, ForwardContext{}, labels)->value;
}

bool bit_equal(const Tensor& a, const Tensor& b) {
  return a.shape() == b.shape() && std::memcmp(a.data(), b.data(), a.numel() * sizeof(float)) == 0;
}

}  // namespace

TEST_CASE("unet_inference: exact is bit-identical to UNet::forward for tiny, small and minimal, the default within 1e-4, at 1, 2 and 3 threads") {
  struct Case {
    const char* name;
    int64_t batch;
    bool conditional, learned_variance;
  };
  for (const Case& k : {Case{"minimal", 5, false, false}, Case{"minimal", 3, true, true}, Case{"tiny", 3, false, false},
                        Case{"small", 2, false, false}}) {
    UNetConfig c = unet_config(k.name);
    if (k.conditional) c.num_classes = 4;
    c.learned_variance = k.learned_variance;
    UNet net(c, 2);
    perturb(net, 3);
    const Tensor x = randn({k.batch, c.in_ch, c.image_size, c.image_size}, 7);
    std::vector<int64_t> t, labels;
    for (int64_t i = 0; i < k.batch; i++) {
      t.push_back(1 + (i * 397) % 1000);
      labels.push_back(i % (c.num_classes + 1));  // the null class too
    }
    const std::vector<int64_t>* ls = k.conditional ? &labels : nullptr;
    set_num_threads(1);
    const Tensor want = tape_forward(net, x, t, ls);
    UNetInference exact(net, /*exact=*/true), fast(net);
    Tensor fast_1;
    for (int threads : {1, 2, 3}) {
      set_num_threads(threads);
      const Tensor got = exact.forward(x, t, ls);
      CHECK_MESSAGE(bit_equal(got, want), k.name << (k.conditional ? " conditional" : "") << " at " << threads
                                                 << " threads differs from UNet::forward");
      if (!bit_equal(got, want)) testing::check_allclose(k.name, got, want, 0.0, 0.0);  // prints where
      // The default: the Upsample as four 2x2 phase convolutions, other rounding there only.
      const Tensor f = fast.forward(x, t, ls);
      if (threads == 1) {
        fast_1 = f;
        // The Upsample's output differs by a few ulps (measured 2.5e-6 at 28x28, outputs ~6,
        // against 3.5e-6 for conv2d itself, both against double); the layers after it carry
        // that along. Measured here: 2.8e-7 (minimal), 1.2e-6 (tiny), 1.3e-6 (small) of the
        // output's largest value; 1e-4 leaves room for other targets' rounding.
        double scale = 0.0;
        for (int64_t i = 0; i < want.numel(); i++) scale = std::max(scale, std::fabs(double(want[i])));
        testing::check_allclose((std::string(k.name) + " fast").c_str(), f, want, 1e-4 * scale, 0.0);
      }
      CHECK(bit_equal(f, fast_1));  // any thread count, the same bits
    }
    set_num_threads(1);
  }
}

TEST_CASE("unet_inference: a second forward reuses the buffers and gives the same values; it checks its inputs") {
  UNetConfig c = unet_config("minimal");
  UNet net(c, 4);
  perturb(net, 5);
  UNetInference inference(net);
  const Tensor x = randn({4, 1, 8, 8}, 8);
  const std::vector<int64_t> t{1, 10, 100, 1000};
  set_num_threads(2);
  const Tensor a = inference.forward(x, t), b = inference.forward(x, t);
  CHECK(bit_equal(a, b));
  // A batch of one, and a different batch size on the same object.
  const Tensor one = inference.forward(randn({1, 1, 8, 8}, 8), {1});
  CHECK(one.shape() == Shape{1, 1, 8, 8});
  set_num_threads(1);
  CHECK_THROWS_AS(inference.forward(x, {1, 2}), Error);                      // 2 timesteps for 4 images
  CHECK_THROWS_AS(inference.forward(randn({4, 1, 9, 9}, 8), t), Error);       // wrong image size
  const std::vector<int64_t> labels{0, 1, 2, 3};
  CHECK_THROWS_AS(inference.forward(x, t, &labels), Error);                  // labels for an unconditional model
}

TEST_CASE("unet_inference: a snapshot: weights changed after construction are not seen") {
  UNet net(unet_config("minimal"), 6);
  perturb(net, 7);
  const Tensor x = randn({2, 1, 8, 8}, 9);
  const std::vector<int64_t> t{3, 30};
  UNetInference before(net);
  const Tensor want = before.forward(x, t);
  for (Parameter* p : net.parameters()) p->var->value.fill_(0.5f);
  CHECK(bit_equal(before.forward(x, t), want));
  CHECK(!bit_equal(UNetInference(net).forward(x, t), want));
}
