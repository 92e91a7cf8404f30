#include <doctest/doctest.h>

#include <cmath>

#include "ladon.h"
#include "tests/helpers.h"

using namespace ladon;
using testing::values;

TEST_CASE("backward of a small expression, by hand") {
  // y = sum(a * b + a), dy/da = b + 1, dy/db = a
  Tensor a = tensor({1, 2, 3}).requires_grad_();
  Tensor b = tensor({4, 5, 6}).requires_grad_();
  sum(a * b + a).backward();
  CHECK(values(a.grad()) == std::vector<float>{5, 6, 7});
  CHECK(values(b.grad()) == std::vector<float>{1, 2, 3});
}

TEST_CASE("broadcast gradients sum back to the input shape") {
  Tensor w = tensor({1, 2}, {1, 2}).requires_grad_();
  const Tensor x = tensor({1, 2, 3, 4, 5, 6}, {3, 2});
  sum(x * w).backward();
  CHECK(w.grad().shape() == Shape{1, 2});
  CHECK(values(w.grad()) == std::vector<float>{9, 12});
}

TEST_CASE("gradients accumulate until zero_grad") {
  Tensor x = tensor({2}).requires_grad_();
  (x * x).backward();
  (x * 3.0).backward();
  CHECK(values(x.grad()) == std::vector<float>{7});
  x.zero_grad();
  CHECK_FALSE(x.grad().defined());
}

TEST_CASE("a tensor used twice receives both gradients") {
  Tensor x = tensor({3}).requires_grad_();
  const Tensor y = x * 2.0;
  (y * y + y).backward();  // d/dx (4x^2 + 2x) = 8x + 2 = 26
  CHECK(values(x.grad()) == std::vector<float>{26});
}

TEST_CASE("non-scalar outputs need a seed") {
  Tensor x = tensor({1, 2}).requires_grad_();
  const Tensor y = x * 3.0;
  CHECK_THROWS_WITH_AS(y.backward(), "backward: a seed gradient is required for a non-scalar output of shape [2]", Error);
  y.backward(tensor({1, 10}));
  CHECK(values(x.grad()) == std::vector<float>{3, 30});
}

TEST_CASE("the graph is freed after backward unless retained") {
  Tensor x = tensor({1, 2}).requires_grad_();
  const Tensor loss = sum(exp(x));
  loss.backward({}, true);
  loss.backward();
  CHECK(values(x.grad()) == std::vector<float>{2 * std::exp(1.0f), 2 * std::exp(2.0f)});
  CHECK_THROWS_WITH_AS(loss.backward(), doctest::Contains("trying to backward through the graph a second time"), Error);
}

TEST_CASE("backward on a tensor that does not require grad") {
  const Tensor x = tensor({1, 2});
  CHECK_THROWS_WITH_AS(sum(x).backward(), doctest::Contains("does not require grad"), Error);
}

TEST_CASE("NoGradGuard and detach stop recording") {
  Tensor x = tensor({1, 2}).requires_grad_();
  {
    NoGradGuard guard;
    CHECK_FALSE((x * 2.0).requires_grad());
  }
  CHECK((x * 2.0).requires_grad());
  const Tensor d = x.detach();
  CHECK_FALSE(d.requires_grad());
  CHECK(d.impl()->storage == x.impl()->storage);
  CHECK_THROWS_WITH_AS((x * 2.0).requires_grad_(false), doctest::Contains("only leaf tensors"), Error);
  CHECK_THROWS_WITH_AS(arange(3).requires_grad_(), "requires_grad_: only float32 tensors can require grad, got int64",
                       Error);
}

TEST_CASE("grad() returns chosen gradients without touching .grad()") {
  Tensor w = tensor({1, 2}).requires_grad_();
  Tensor v = tensor({3}).requires_grad_();
  const Tensor h = w * 3.0;         // intermediate
  const Tensor loss = sum(h * h);   // = 9 * sum(w^2)
  const auto g = grad({loss}, {w, h, v}, {.retain_graph = true});
  CHECK(values(g[0]) == std::vector<float>{18, 36});
  CHECK(values(g[1]) == std::vector<float>{6, 12});
  CHECK(values(g[2]) == std::vector<float>{0});  // loss does not depend on v
  CHECK_FALSE(w.grad().defined());
  // Two task losses, one shared parameter: per-task gradients, as PCGrad needs.
  const Tensor task1 = sum(w), task2 = sum(w * w);
  CHECK(values(grad({task1}, {w})[0]) == std::vector<float>{1, 1});
  CHECK(values(grad({task2}, {w})[0]) == std::vector<float>{2, 4});
}

TEST_CASE("deep graphs do not overflow the stack") {
  Tensor x = tensor({1}).requires_grad_();
  Tensor y = x;
  for (int i = 0; i < 100000; ++i) y = y * 1.0;  // also freed iteratively when y goes away
  y.backward();
  CHECK(values(x.grad()) == std::vector<float>{1});
}

TEST_CASE("views propagate gradients into the viewed tensor") {
  Tensor x = tensor({1, 2, 3, 4, 5, 6}, {2, 3}).requires_grad_();
  sum(x.narrow(1, 1, 2) * 2.0).backward();
  CHECK(values(x.grad()) == std::vector<float>{0, 2, 2, 0, 2, 2});
  x.zero_grad();
  sum(x.t().reshape({6}) * arange(0.0, 6.0)).backward();  // t() order: x00 x10 x01 x11 x02 x12
  CHECK(values(x.grad()) == std::vector<float>{0, 2, 4, 1, 3, 5});
}

TEST_CASE("GradReadyHook reports each leaf once, when its .grad() is final") {
  // y = sum(w * x) + sum(w * w) + sum(b): w gets three contributions, b one; x needs no gradient.
  Tensor w = tensor({1, 2}).requires_grad_();
  Tensor b = tensor({3}).requires_grad_();
  Tensor x = tensor({5, 7});
  Tensor y = sum(w * x) + sum(w * w) + sum(b);
  std::vector<TensorImpl*> order;
  std::vector<std::vector<float>> seen;
  {
    GradReadyHook hook([&](TensorImpl* leaf) {
      order.push_back(leaf);
      seen.push_back(Tensor(leaf->grad).to_vector<float>());  // must already be complete
    });
    y.backward();
  }
  REQUIRE(order.size() == 2);
  CHECK(((order[0] == w.impl().get() && order[1] == b.impl().get()) ||
         (order[0] == b.impl().get() && order[1] == w.impl().get())));
  const std::size_t iw = order[0] == w.impl().get() ? 0 : 1;
  CHECK(seen[iw] == std::vector<float>{1 * 2 + 5, 2 * 2 + 7});  // x + 2w
  CHECK(seen[1 - iw] == std::vector<float>{1});

  // Outside the guard nothing is reported; grad() never reports.
  order.clear();
  sum(w * x).backward();
  GradReadyHook hook([&](TensorImpl* leaf) { order.push_back(leaf); });
  ladon::grad({sum(w * x)}, {w});
  CHECK(order.empty());
  sum(b * b).backward();
  CHECK(order == std::vector<TensorImpl*>{b.impl().get()});
}

namespace {
// An elementwise product a * b whose backward counts its calls and records the mask it was given,
// so a test can see which nodes grad() runs and which input gradients it asks for.
struct Probe {
  int calls = 0;
  std::vector<bool> last_needs;
  Tensor operator()(const Tensor& a, const Tensor& b) {
    Tensor out;
    {
      NoGradGuard no_grad;
      out = a * b;
    }
    return record(out, "probe", {a, b},
                  [this, a = a.detach(), b = b.detach()](const Tensor& g, const std::vector<bool>& needs) {
                    ++calls;
                    last_needs = needs;
                    return Grads{needs[0] ? g * b : Tensor(), needs[1] ? g * a : Tensor()};
                  });
  }
};
}  // namespace

TEST_CASE("grad() runs only the nodes between the outputs and the inputs, asking only for what is needed") {
  // Two layers x -> h = relu(x * w1) -> y = h * w2, plus a branch z = v * 2 that reaches the loss but
  // not w2; x requires grad, as the input of a first layer inside a bigger graph would.
  Tensor x = tensor({1, -2, 3}).requires_grad_();
  Tensor w1 = tensor({2, 2, 2}).requires_grad_();
  Tensor w2 = tensor({1, 2, 3}).requires_grad_();
  Tensor v = tensor({5, 5, 5}).requires_grad_();
  Probe layer1, layer2, branch;
  const Tensor h = relu(layer1(x, w1));  // [2, 0, 6]
  const Tensor loss = sum(layer2(h, w2)) + sum(branch(v, tensor({2, 2, 2})));

  // Only w2: the first layer and the branch do not run; the second is not asked for h's gradient.
  CHECK(values(grad({loss}, {w2}, {.retain_graph = true})[0]) == std::vector<float>{2, 0, 6});
  CHECK(layer1.calls == 0);
  CHECK(branch.calls == 0);
  CHECK(layer2.calls == 1);
  CHECK(layer2.last_needs == std::vector<bool>{false, true});

  // Only w1: the first layer is not asked for x's gradient, the second not for w2's.
  CHECK(values(grad({loss}, {w1}, {.retain_graph = true})[0]) == std::vector<float>{1, 0, 9});
  CHECK(layer1.calls == 1);
  CHECK(layer1.last_needs == std::vector<bool>{false, true});
  CHECK(layer2.last_needs == std::vector<bool>{true, false});
  CHECK(branch.calls == 0);

  // backward() still computes every gradient that is required, and nothing else.
  loss.backward();
  CHECK(layer1.last_needs == std::vector<bool>{true, true});
  CHECK(branch.last_needs == std::vector<bool>{true, false});  // the constant 2 needs no gradient
  CHECK(values(x.grad()) == std::vector<float>{2, 0, 6});
  CHECK(values(v.grad()) == std::vector<float>{2, 2, 2});
}

TEST_CASE("grad() at an intermediate tensor stops there") {
  Tensor w = tensor({1, 2}).requires_grad_();
  Probe scale;
  const Tensor h = scale(w, tensor({3, 3}));  // [3, 6]
  const Tensor loss = sum(h * h);
  CHECK(values(grad({loss}, {h}, {.retain_graph = true})[0]) == std::vector<float>{6, 12});
  CHECK(scale.calls == 0);  // h's own backward is not needed for h's gradient
  // Asked together with a leaf behind it, h's node runs once and both come out.
  const auto g = grad({loss}, {h, w});
  CHECK(scale.calls == 1);
  CHECK(values(g[0]) == std::vector<float>{6, 12});
  CHECK(values(g[1]) == std::vector<float>{18, 36});
  // An output that is itself the input gets its seed.
  CHECK(values(grad({h}, {h}, {.seeds = {tensor({1, -1})}})[0]) == std::vector<float>{1, -1});
}

TEST_CASE("grad() frees what it ran unless retain_graph, and leaves the rest of the graph alone") {
  Tensor a = tensor({1, 2}).requires_grad_();
  Tensor b = tensor({3, 4}).requires_grad_();
  const Tensor ea = exp(a);
  const Tensor loss = sum(ea * b);
  CHECK(values(grad({loss}, {b})[0]) == std::vector<float>{std::exp(1.0f), std::exp(2.0f)});
  // The product and the sum were run and freed; exp(a) never ran, so it still holds its saved tensors.
  CHECK_THROWS_WITH_AS(grad({loss}, {b}), doctest::Contains("trying to backward through the graph a second time"),
                       Error);
  CHECK(values(grad({ea}, {a}, {.seeds = {tensor({1, 1})}})[0]) == std::vector<float>{std::exp(1.0f), std::exp(2.0f)});
  // With retain_graph the same gradient can be asked for again.
  const Tensor loss2 = sum(exp(a) * b);
  const auto first = values(grad({loss2}, {a}, {.retain_graph = true})[0]);
  CHECK(values(grad({loss2}, {a})[0]) == first);
  CHECK_FALSE(a.grad().defined());
  CHECK_FALSE(b.grad().defined());
}

TEST_CASE("grad() with allow_unused = false names the input the outputs do not reach") {
  Tensor w = tensor({1, 2}).requires_grad_();
  Tensor v = tensor({3}).requires_grad_();
  Tensor u = tensor({1, 2, 3, 4}, {2, 2}).requires_grad_();
  Probe p;
  const Tensor loss = sum(p(w, w));
  CHECK_THROWS_WITH_AS(grad({loss}, {w, u, v}, {.allow_unused = false}),
                       "grad: input 1 of shape [2, 2] is not reached from the outputs (allow_unused = false)", Error);
  CHECK(p.calls == 0);  // checked before anything runs: the graph is intact
  CHECK(values(grad({loss}, {w}, {.allow_unused = false})[0]) == std::vector<float>{2, 4});
  // A leaf output reaches itself.
  CHECK(values(grad({w}, {w}, {.seeds = {tensor({1, 1})}, .allow_unused = false})[0]) == std::vector<float>{1, 1});
}

TEST_CASE("grad() checks its arguments") {
  Tensor w = tensor({1, 2}).requires_grad_();
  const Tensor y = w * 2.0;
  CHECK_THROWS_WITH_AS(grad({y}, {w}), "grad: a seed is required for non-scalar output 0 of shape [2]", Error);
  CHECK_THROWS_WITH_AS(grad({y}, {w}, {.seeds = {tensor({1, 2, 3})}}),
                       "grad: seed 0 of shape [3] does not match output of shape [2]", Error);
  CHECK_THROWS_WITH_AS(grad({y}, {w}, {.seeds = {tensor({1, 1}), tensor({1, 1})}}), "grad: 1 outputs but 2 seeds",
                       Error);
  CHECK_THROWS_WITH_AS(grad({y}, {tensor({1})}, {.seeds = {tensor({1, 1})}}),
                       "grad: input 0 of shape [1] does not require grad", Error);
}

TEST_CASE("a leaf reached through a transposed view keeps its gradient's storage instead of a clone") {
  // W [256, 1024] (1 MB) used as linear's weight W.t(): linear makes dW in W's layout and the
  // transpose hands it over as a view. The engine's own handle on the incoming gradient used to
  // make that storage look shared, so the leaf got a 1 MB clone on top (peak 2 MB + a little).
  Generator gen(3);
  const Tensor w = randn({256, 1024}, gen).requires_grad_();
  const Tensor x = randn({2, 256}, gen);
  const Tensor loss = sum(linear(x, w.t(), Tensor()));
  reset_peak_bytes();
  const std::size_t before = allocator_stats().live_bytes;
  loss.backward();
  constexpr std::size_t kWeightBytes = 256 * 1024 * sizeof(float);
  CHECK(allocator_stats().peak_bytes - before < kWeightBytes + kWeightBytes / 2);
  // dW[i, o] = sum_b x[b, i]: every column the same.
  const std::vector<float> g = values(w.grad()), xv = values(x);
  for (std::int64_t i = 0; i < 256; i += 51)
    for (std::int64_t o = 0; o < 1024; o += 255)
      CHECK(g[static_cast<std::size_t>(i * 1024 + o)] ==
            doctest::Approx(xv[static_cast<std::size_t>(i)] + xv[static_cast<std::size_t>(256 + i)]));
}
