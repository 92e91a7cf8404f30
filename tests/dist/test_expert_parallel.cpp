#include <doctest/doctest.h>

#include "helpers.h"

using namespace ladon;
using namespace ladon::testing;

namespace {

mtl::SparseMoE make_moe(std::int64_t experts, double capacity_factor) {
  Generator gen(31);
  mtl::SparseMoE moe({.in = 4,
                      .out = 3,
                      .experts = experts,
                      .k = 2,
                      .expert_hidden = {5},
                      .noisy_gating = false,  // noise is per rank; without it routing is a function of x
                      .capacity_factor = capacity_factor,
                      .balance_weight = 0.01,
                      .z_loss_weight = 0.001},
                     gen);
  // Router weights away from zero, so tokens disagree about their experts.
  NoGradGuard no_grad;
  const Tensor w = randn({4, experts}, gen);
  std::copy_n(w.data<float>(), w.numel(), moe.gate_weight.data<float>());
  return moe;
}

}  // namespace

TEST_CASE("ExpertParallel: experts on their owners give the steps one process takes on the whole batch") {
  dist::Communicator& world = dist::world();
  for (std::int64_t experts : {4, 3}) {  // 3 experts on 4 ranks: one rank owns none
    CAPTURE(experts);
    mtl::SparseMoE moe = make_moe(experts, 0.0), reference = make_moe(experts, 0.0);
    dist::ExpertParallel ep(moe, world);
    dist::DataParallel dp(moe, world);
    nn::SGD opt(moe.parameters(), {.lr = 0.1});
    nn::SGD ref_opt(reference.parameters(), {.lr = 0.1});
    std::int64_t owned = 0;
    for (std::int64_t e = 0; e < experts; ++e) owned += ep.owner(e) == world.rank();
    CHECK(owned == ep.first_expert(world.rank() + 1) - ep.first_expert(world.rank()));
    for (int step = 0; step < 3; ++step) {
      Generator gen(500 + static_cast<std::uint64_t>(step));
      const Tensor x = randn({8, 4}, gen), y = randn({8, 3}, gen);
      opt.zero_grad();
      const Tensor out = moe(my_rows(x, world));
      const Tensor loss = nn::mse_loss(out, my_rows(y, world)) + moe.aux_loss();
      dp.backward(loss);
      opt.step();
      // Every assignment was computed once, by its expert's owner.
      std::int64_t rows = ep.rows_computed();
      world.allreduce_sum(std::span<std::int64_t>(&rows, 1));
      CHECK(rows == 8 * 2);

      ref_opt.zero_grad();
      const Tensor ref_out = reference(x);
      (nn::mse_loss(ref_out, y) + reference.aux_loss()).backward();
      ref_opt.step();
      // The balance losses saw the global routing.
      CHECK(moe.losses().importance.item() == doctest::Approx(reference.losses().importance.item()).epsilon(1e-5));
      CHECK(moe.losses().load.item() == doctest::Approx(reference.losses().load.item()).epsilon(1e-5));
      CHECK(moe.losses().balance.item() == doctest::Approx(reference.losses().balance.item()).epsilon(1e-5));
      CHECK(moe.losses().z.item() == doctest::Approx(reference.losses().z.item()).epsilon(1e-5));
      CHECK(max_abs_diff(out.to_vector<float>(), my_rows(ref_out, world).to_vector<float>()) < 1e-5);
    }
    // Each rank's experts (its shard) and the replicated router, against one process's.
    CHECK(max_abs_diff_by_name(moe, reference) < 1e-5);
    CHECK(same_on_every_rank(moe.gate_weight.to_vector<float>(), world));
    CHECK(dp.num_rank_local() == static_cast<std::size_t>(2 * owned * 2));  // 2 Linears, weight and bias each
  }
}

TEST_CASE("ExpertParallel: each rank holds only its experts, so expert memory per rank falls as 1/W") {
  dist::Communicator& world = dist::world();
  const std::int64_t experts = 8, in = 16, hidden = 64;
  Generator gen(3);
  mtl::SparseMoE moe({.in = in, .experts = experts, .k = 2, .expert_hidden = {hidden}}, gen);
  const std::int64_t router = 2 * in * experts;                             // gate and noise weights
  const std::int64_t per_expert = in * hidden + hidden + hidden * in + in;  // two Linears
  REQUIRE(moe.num_parameters() == router + experts * per_expert);
  dist::ExpertParallel ep(moe, world);
  const std::int64_t mine = ep.first_expert(world.rank() + 1) - ep.first_expert(world.rank());
  // 8 experts over 1, 2 or 4 ranks: 8 / W each.
  CHECK(mine == experts / world.size());
  CHECK(moe.num_parameters() == router + mine * per_expert);
  CHECK(static_cast<std::int64_t>(moe.parameters().size()) == 2 + mine * 4);
  for (std::int64_t e = 0; e < experts; ++e) CHECK(moe.holds(e) == (ep.owner(e) == world.rank()));
  // Every expert is held exactly once across the ranks.
  std::int64_t expert_values = moe.num_parameters() - router;
  world.allreduce_sum(std::span<std::int64_t>(&expert_values, 1));
  CHECK(expert_values == experts * per_expert);
  const std::int64_t other = (ep.first_expert(world.rank() + 1)) % experts;
  if (!moe.holds(other))
    CHECK_THROWS_WITH_AS(moe.expert(other), doctest::Contains("is not held by this process"), Error);
  CHECK_THROWS_WITH_AS(dist::ExpertParallel(moe, world), "ExpertParallel: the layer already has an expert dispatch",
                       Error);
  Generator gen2(3);
  mtl::SparseMoE part({.in = in, .experts = experts, .k = 2, .expert_hidden = {hidden}}, gen2);
  part.hold_experts(0, 1);
  CHECK_THROWS_WITH_AS(dist::ExpertParallel(part, world),
                       "ExpertParallel: the layer holds only experts [0, 1) of 8: give it the whole layer (the same "
                       "on every rank)",
                       Error);
}

TEST_CASE("ExpertParallel: with capacity, each rank's tokens are dropped as one process would drop them") {
  dist::Communicator& world = dist::world();
  // Capacity is per rank (GShard's groups): this rank's output is what a single layer gives on this
  // rank's tokens alone.
  mtl::SparseMoE moe = make_moe(4, 0.5), alone = make_moe(4, 0.5);
  dist::ExpertParallel ep(moe, world);
  Generator gen(77);
  const Tensor x = my_rows(randn({16, 4}, gen), world);
  const Tensor out = moe(x);
  const Tensor expected = alone(x);
  CHECK(moe.stats().dropped_fraction == doctest::Approx(alone.stats().dropped_fraction));
  CHECK(moe.stats().dropped_fraction > 0);
  CHECK(max_abs_diff(out.to_vector<float>(), expected.to_vector<float>()) < 1e-6);
  // And backward runs the reverse exchange on every rank without a hang.
  dist::DataParallel dp(moe, world);
  dp.backward(sum(out) + moe.aux_loss());
  CHECK(same_on_every_rank(moe.gate_weight.grad().to_vector<float>(), world));
  const std::int64_t first = ep.first_expert(world.rank());
  if (first < ep.first_expert(world.rank() + 1)) CHECK(moe.expert(first).parameters()[0].grad().defined());
}

TEST_CASE("dist::exchange and all_reduce_sum: values by hand, gradients by the reverse collective") {
  dist::Communicator& world = dist::world();
  const int W = world.size(), r = world.rank();
  // Rank r sends one row [r, s] to every rank s; it receives [s, r] from every s.
  std::vector<float> rows;
  for (int s = 0; s < W; ++s) rows.insert(rows.end(), {static_cast<float>(r), static_cast<float>(s)});
  Tensor x = tensor(rows, {W, 2}).requires_grad_();
  const std::vector<std::int64_t> one(static_cast<std::size_t>(W), 1);
  const Tensor y = dist::exchange(x, one, one, world);
  std::vector<float> expected;
  for (int s = 0; s < W; ++s) expected.insert(expected.end(), {static_cast<float>(s), static_cast<float>(r)});
  CHECK(y.to_vector<float>() == expected);
  // d/dx of sum(y * c), c = 1 + the receiving rank: row s of x went to rank s, so its gradient is 1 + s.
  sum(y * static_cast<double>(1 + r)).backward();
  std::vector<float> grad;
  for (int s = 0; s < W; ++s) grad.insert(grad.end(), {static_cast<float>(1 + s), static_cast<float>(1 + s)});
  CHECK(x.grad().to_vector<float>() == grad);

  Tensor v = tensor({static_cast<float>(r), 1.0f}, {2}).requires_grad_();
  const Tensor total = dist::all_reduce_sum(v, world);
  CHECK(total.to_vector<float>() == std::vector<float>{static_cast<float>(W * (W - 1) / 2), static_cast<float>(W)});
  sum(total * static_cast<double>(r + 1)).backward();  // every rank's copy of the total feeds its loss
  CHECK(v.grad().to_vector<float>() == std::vector<float>(2, static_cast<float>(W * (W + 1) / 2)));

  CHECK_THROWS_WITH_AS(dist::exchange(x, one, std::vector<std::int64_t>(static_cast<std::size_t>(W) + 1, 0), world),
                       doctest::Contains("receive counts for"), Error);
}
