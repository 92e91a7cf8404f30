#include <doctest/doctest.h>

#include "helpers.h"

using namespace ladon;
using namespace ladon::testing;

namespace {

struct Mlp : nn::Module {
  nn::Linear fc1, fc2, unused;
  explicit Mlp(Generator& gen) : fc1(6, 16, {}, gen), fc2(16, 3, {}, gen), unused(2, 2, {}, gen) {}
  Tensor operator()(const Tensor& x) { return fc2(relu(fc1(x))); }
  void visit(Visitor& v) override {
    v("fc1", fc1);
    v("fc2", fc2);
    v("unused", unused);  // never in the graph: must keep no gradient
  }
};

struct Data {
  Tensor x, y;
};
Data global_batch(std::int64_t rows, std::uint64_t seed) {
  Generator gen(seed);
  return {randn({rows, 6}, gen), randn({rows, 3}, gen)};
}

}  // namespace

TEST_CASE("RingAllreduce: sums by hand over segments of any length, scaled, two rings in flight, same bits") {
  dist::Communicator& world = dist::world();
  const int p = world.size(), r = world.rank();
  // Lengths below the rank count (empty blocks), not a multiple of it, and a long one.
  for (std::size_t n : {std::size_t{1}, std::size_t{3}, std::size_t{10}, std::size_t{1001}}) {
    CAPTURE(n);
    // Rank r holds (r + 1) * (i + 1) and 0.1 * r; the sums are (i + 1) p (p + 1) / 2 and a rounded
    // 0.1 * p (p - 1) / 2, the second averaged (scale 1 / p). a lies in three segments, one empty,
    // so blocks cross segment ends.
    std::vector<float> a_head(n / 3), a_empty, a_tail(n - n / 3), b(n);
    for (std::size_t i = 0; i < n; ++i) {
      (i < n / 3 ? a_head[i] : a_tail[i - n / 3]) = static_cast<float>((r + 1) * static_cast<int>(i + 1));
      b[i] = 0.1f * static_cast<float>(r);
    }
    dist::RingAllreduce ring_a, ring_b;
    ring_a.start(world.handle(), {a_head, a_empty, a_tail}, 0);
    ring_b.start(world.handle(), {b}, 1, 1.0f / static_cast<float>(p));
    CHECK(ring_a.active() == (p > 1));
    while (!ring_b.test()) {  // test() alone completes a ring
    }
    ring_a.wait();
    CHECK_FALSE(ring_a.active());
    for (std::size_t i = 0; i < n; ++i) {
      const float a = i < n / 3 ? a_head[i] : a_tail[i - n / 3];
      CHECK(a == static_cast<float>(static_cast<int>(i + 1) * p * (p + 1) / 2));
      CHECK(b[i] == doctest::Approx(0.1 * (p - 1) / 2).epsilon(1e-6));
    }
    CHECK(same_on_every_rank(b, world));  // each element summed and scaled once, on one rank, then copied
  }
  dist::RingAllreduce ring;
  std::vector<float> v(4, 1.0f);
  ring.start(world.handle(), {v}, 0, 0.5f);
  if (p > 1) CHECK_THROWS_WITH(ring.start(world.handle(), {v}, 0), doctest::Contains("still in flight"));
  ring.wait();
  CHECK(v == std::vector<float>(4, 0.5f * static_cast<float>(p)));  // scaled at one rank too
}

TEST_CASE("DataParallel: N ranks on a split batch take the steps one process takes on the whole batch") {
  dist::Communicator& world = dist::world();
  // bucket_mb tiny (one byte): one bucket per parameter, so several allreduces overlap backward.
  for (double bucket_mb : {25.0, 1e-6}) {
    CAPTURE(bucket_mb);
    Generator init(11 + static_cast<std::uint64_t>(world.rank()));  // different on purpose: broadcast fixes it
    Mlp model(init);
    Generator init0(11);
    Mlp reference(init0);  // what rank 0 starts from, trained alone on the whole batch
    dist::DataParallel dp(model, world, {.bucket_mb = bucket_mb});
    CHECK(max_abs_diff(flat_parameters(model), flat_parameters(reference)) == 0);
    if (bucket_mb < 1) {
      CHECK(dp.num_buckets() == 6);
      CHECK(dp.bucket_of_parameters() == std::vector<std::size_t>{5, 4, 3, 2, 1, 0});  // reverse order
    } else {
      CHECK(dp.num_buckets() == 1);
    }
    nn::SGD opt(model.parameters(), {.lr = 0.1, .momentum = 0.9});
    nn::SGD ref_opt(reference.parameters(), {.lr = 0.1, .momentum = 0.9});
    for (int step = 0; step < 4; ++step) {
      const Data d = global_batch(8, 100 + static_cast<std::uint64_t>(step));
      opt.zero_grad();
      dp.backward(nn::mse_loss(model(my_rows(d.x, world)), my_rows(d.y, world)));
      opt.step();
      // Every bucket's allreduce started before backward returned, even those holding only the
      // parameters the loss does not use (which come first in reverse order).
      CHECK(dp.last_timing().buckets_started_in_backward == dp.num_buckets());
      ref_opt.zero_grad();
      nn::mse_loss(reference(d.x), d.y).backward();
      ref_opt.step();
    }
    CHECK_FALSE(model.unused.weight.grad().defined());
    CHECK(model.fc1.weight.grad().defined());
    // Float32 rounding only: the sums over rows are split differently. Bound: a few ulps of the
    // parameters (|p| < 2) after four steps.
    CHECK(max_abs_diff(flat_parameters(model), flat_parameters(reference)) < 2e-6);
    CHECK(same_on_every_rank(flat_parameters(model), world));
  }
}

TEST_CASE("DataParallel: no_sync accumulates locally; the next synchronised backward averages the sum") {
  dist::Communicator& world = dist::world();
  Generator init(5);
  Mlp model(init);
  Generator init_ref(5);
  Mlp reference(init_ref);
  dist::DataParallel dp(model, world);
  const Data a = global_batch(8, 1), b = global_batch(8, 2);
  {
    auto guard = dp.no_sync();
    dp.backward(nn::mse_loss(model(my_rows(a.x, world)), my_rows(a.y, world)) * 0.5);
  }
  dp.backward(nn::mse_loss(model(my_rows(b.x, world)), my_rows(b.y, world)) * 0.5);
  (nn::mse_loss(reference(a.x), a.y) * 0.5 + nn::mse_loss(reference(b.x), b.y) * 0.5).backward();
  double d = 0;
  const auto mp = model.parameters(), rp = reference.parameters();
  for (std::size_t i = 0; i < 4; ++i)
    d = std::max(d, max_abs_diff(mp[i].grad().to_vector<float>(), rp[i].grad().to_vector<float>()));
  CHECK(d < 1e-6);
}

TEST_CASE("DataParallel: inside no_sync nothing is exchanged") {
  dist::Communicator& world = dist::world();
  Generator init(5);
  Mlp model(init);
  dist::DataParallel dp(model, world);
  // Each rank a different batch: the gradients stay different unless they were averaged.
  const Data d = global_batch(4, 40 + static_cast<std::uint64_t>(world.rank()));
  {
    auto guard = dp.no_sync();
    dp.backward(nn::mse_loss(model(d.x), d.y));
  }
  const std::vector<float> g = model.fc2.weight.grad().to_vector<float>();
  CHECK(same_on_every_rank(g, world) == (world.size() == 1));
  dp.synchronize();  // the same averaging, on demand
  CHECK(same_on_every_rank(model.fc2.weight.grad().to_vector<float>(), world));
}

TEST_CASE("DataParallel: a small first bucket holds the last parameters alone") {
  Generator init(5);
  Mlp model(init);
  // Reverse order: unused.bias (8 bytes), unused.weight (16), fc2.bias, ...; a 20-byte first
  // bucket takes unused.bias only, the 25 MB second one everything else.
  dist::DataParallel dp(model, dist::world(), {.first_bucket_mb = 20.0 / (1024 * 1024)});
  CHECK(dp.num_buckets() == 2);
  CHECK(dp.bucket_of_parameters() == std::vector<std::size_t>{1, 1, 1, 1, 1, 0});
  CHECK(dp.num_rank_local() == 0);
}

namespace {
// A gated net like MMoE: backward finishes the body's gradients before the gate's, though the gate
// comes later in the parameters (reverse order would put it first).
struct Gated : nn::Module {
  nn::Linear body, gate, head;
  explicit Gated(Generator& gen) : body(6, 16, {}, gen), gate(6, 16, {}, gen), head(16, 3, {}, gen) {}
  Tensor operator()(const Tensor& x) { return head(relu(body(x)) * sigmoid(gate(x))); }
  void visit(Visitor& v) override {
    v("body", body);
    v("gate", gate);
    v("head", head);
  }
};
}  // namespace

TEST_CASE("DataParallel: after the first backward the buckets follow the order gradients became final") {
  dist::Communicator& world = dist::world();
  Generator init(3);
  Gated model(init);
  Generator init_ref(3);
  Gated reference(init_ref);
  const std::vector<Tensor> params = reference.parameters();
  const Data d = global_batch(8, 7);
  // The order this backward reports the gradients final, seen through the same hook DataParallel uses.
  std::vector<std::size_t> ready;
  {
    GradReadyHook hook([&](TensorImpl* leaf) {
      for (std::size_t k = 0; k < params.size(); ++k)
        if (params[k].impl().get() == leaf) ready.push_back(k);
    });
    nn::mse_loss(reference(d.x), d.y).backward();
  }
  REQUIRE(ready.size() == params.size());
  std::vector<std::size_t> reverse(params.size());
  for (std::size_t k = 0; k < reverse.size(); ++k) reverse[k] = reverse.size() - 1 - k;
  REQUIRE(ready != reverse);  // otherwise this model shows nothing

  dist::DataParallel dp(model, world, {.bucket_mb = 1e-6});  // one parameter per bucket
  std::vector<std::size_t> expected(params.size());
  for (std::size_t k = 0; k < reverse.size(); ++k) expected[reverse[k]] = k;
  CHECK(dp.bucket_of_parameters() == expected);
  nn::SGD opt(model.parameters(), {.lr = 0.1});
  nn::SGD ref_opt(reference.parameters(), {.lr = 0.1});
  ref_opt.step();  // the gradients of the backward above
  for (int step = 0; step < 3; ++step) {
    const Data e = step == 0 ? d : global_batch(8, 20 + static_cast<std::uint64_t>(step));
    opt.zero_grad();
    dp.backward(nn::mse_loss(model(my_rows(e.x, world)), my_rows(e.y, world)));
    opt.step();
    if (step == 0) {
      for (std::size_t k = 0; k < ready.size(); ++k) expected[ready[k]] = k;
      CHECK(dp.bucket_of_parameters() == expected);
      CHECK(dp.num_buckets() == params.size());
    } else {
      ref_opt.zero_grad();
      nn::mse_loss(reference(e.x), e.y).backward();
      ref_opt.step();
    }
  }
  // The rebuilt buckets average the same gradients: the same steps as one process, to rounding.
  CHECK(max_abs_diff(flat_parameters(model), flat_parameters(reference)) < 2e-6);
  CHECK(same_on_every_rank(flat_parameters(model), world));
}

TEST_CASE("DataParallel: bad options name the problem") {
  Generator init(5);
  Mlp model(init);
  CHECK_THROWS_WITH_AS(dist::DataParallel(model, dist::world(), {.first_bucket_mb = -1}),
                       "DataParallel: first_bucket_mb must be positive, got -1", Error);
  CHECK_THROWS_WITH_AS(dist::DataParallel(model, dist::world(), {.bucket_mb = 0}),
                       "DataParallel: bucket_mb must be positive, got 0", Error);
}

TEST_CASE("DataParallel: synchronised BatchNorm trains as one process with the global batch") {
  dist::Communicator& world = dist::world();
  struct Net : nn::Module {
    nn::Linear fc1, fc2;
    nn::BatchNorm1d bn{8};
    explicit Net(Generator& gen) : fc1(5, 8, {}, gen), fc2(8, 2, {}, gen) {}
    Tensor operator()(const Tensor& x) { return fc2(relu(bn(fc1(x)))); }
    void visit(Visitor& v) override {
      v("fc1", fc1);
      v("bn", bn);
      v("fc2", fc2);
    }
  };
  Generator g1(3), g2(3);
  Net model(g1), reference(g2);
  dist::DataParallel dp(model, world, {.sync_batch_norm = true});
  nn::SGD opt(model.parameters(), {.lr = 0.05});
  nn::SGD ref_opt(reference.parameters(), {.lr = 0.05});
  for (int step = 0; step < 3; ++step) {
    Generator gen(60 + static_cast<std::uint64_t>(step));
    const Tensor x = randn({8, 5}, gen) * 2.0 + 1.0, y = randn({8, 2}, gen);
    opt.zero_grad();
    dp.backward(nn::mse_loss(model(my_rows(x, world)), my_rows(y, world)));
    opt.step();
    ref_opt.zero_grad();
    nn::mse_loss(reference(x), y).backward();
    ref_opt.step();
  }
  CHECK(max_abs_diff(flat_parameters(model), flat_parameters(reference)) < 1e-5);
  CHECK(max_abs_diff(model.bn.running_mean.to_vector<float>(), reference.bn.running_mean.to_vector<float>()) < 1e-5);
  CHECK(max_abs_diff(model.bn.running_var.to_vector<float>(), reference.bn.running_var.to_vector<float>()) < 1e-5);
  // Eval uses the (synchronised) running statistics: no communication, same outputs.
  model.eval();
  reference.eval();
  Generator gen(1);
  const Tensor x = randn({3, 5}, gen);
  CHECK(max_abs_diff(model(x).to_vector<float>(), reference(x).to_vector<float>()) < 1e-5);
}
