#include <doctest/doctest.h>
#include <unistd.h>

#include <cstdio>
#include <string>

#include "helpers.h"

using namespace ladon;
using namespace ladon::testing;

namespace {

struct Net : nn::Module {
  nn::Linear fc1, fc2;
  explicit Net(Generator& gen) : fc1(4, 8, {}, gen), fc2(8, 2, {}, gen) {}
  Tensor operator()(const Tensor& x) { return fc2(relu(fc1(x))); }
  void visit(Visitor& v) override {
    v("fc1", fc1);
    v("fc2", fc2);
  }
};

// One data-parallel Adam step on comm over global batch `step` (8 rows, split across comm's ranks).
void train_step(Net& net, nn::Adam& opt, dist::DataParallel& dp, dist::Communicator& comm, int step) {
  Generator gen(1000 + static_cast<std::uint64_t>(step));
  const Tensor x = randn({8, 4}, gen), y = randn({8, 2}, gen);
  opt.zero_grad();
  dp.backward(nn::mse_loss(net(my_rows(x, comm)), my_rows(y, comm)));
  opt.step();
}

// A net with an expert-parallel layer: a Linear, a SparseMoE of 6 experts (1, 2, 1, 2 per rank at 4
// ranks; 3 and 3 at 2), a Linear.
struct MoENet : nn::Module {
  nn::Linear fc1, fc2;
  mtl::SparseMoE moe;
  explicit MoENet(Generator& gen)
      : fc1(4, 6, {}, gen),
        fc2(6, 2, {}, gen),
        moe({.in = 6, .experts = 6, .k = 2, .expert_hidden = {5}, .noisy_gating = false, .balance_weight = 0.01}, gen) {
    NoGradGuard no_grad;
    const Tensor w = randn({6, 6}, gen);  // a router away from zero: tokens disagree about experts
    std::copy_n(w.data<float>(), w.numel(), moe.gate_weight.data<float>());
  }
  Tensor operator()(const Tensor& x) { return fc2(moe(relu(fc1(x)))); }
  void visit(Visitor& v) override {
    v("fc1", fc1);
    v("moe", moe);
    v("fc2", fc2);
  }
};

// One step of MoENet as train_step's, with the layer's balance losses.
void moe_step(MoENet& net, nn::Adam& opt, dist::DataParallel& dp, dist::Communicator& comm, int step) {
  Generator gen(2000 + static_cast<std::uint64_t>(step));
  const Tensor x = randn({8, 4}, gen), y = randn({8, 2}, gen);
  opt.zero_grad();
  const Tensor out = net(my_rows(x, comm));  // before aux_loss(): the forward sets it
  dp.backward(nn::mse_loss(out, my_rows(y, comm)) + net.moe.aux_loss());
  opt.step();
}

std::string shared_path(dist::Communicator& world, const std::string& name) {
  std::int64_t pid = getpid();  // a path every rank agrees on: rank 0's pid
  world.broadcast(std::span<std::int64_t>(&pid, 1), 0);
  return "/tmp/ladon-dist-test-" + name + std::to_string(pid) + ".ckpt";
}

}  // namespace

TEST_CASE("dist checkpoints: expert shards gathered into one process's file, scattered at any world size") {
  dist::Communicator& world = dist::world();
  const std::string path = shared_path(world, "moe-"), alone_path = path + ".alone";

  // One process, uninterrupted, on every rank alone (the expert layer whole, no dispatch); its file
  // after 3 steps is what the sharded save must reproduce.
  std::vector<float> reference;
  auto alone = world.split(world.rank(), 0);
  Generator ref_gen(21);
  MoENet ref_net(ref_gen);
  {
    nn::Adam opt(ref_net.parameters(), {.lr = 0.01});
    dist::DataParallel dp(ref_net, *alone);
    for (int step = 0; step < 5; ++step) {
      moe_step(ref_net, opt, dp, *alone, step);
      if (step == 2 && world.rank() == 0) nn::save_checkpoint(alone_path, ref_net, {.optimizer = &opt});
    }
  }

  {  // 3 steps at the full world size, experts sharded, then save.
    Generator gen(21);
    MoENet net(gen);
    dist::ExpertParallel ep(net.moe, world);
    dist::DataParallel dp(net, world);
    nn::Adam opt(net.parameters(), {.lr = 0.01});
    for (int step = 0; step < 3; ++step) moe_step(net, opt, dp, world, step);
    nn::StateDict meta;
    meta.set("step", std::int64_t{3});
    dist::save_checkpoint(path, net, {.optimizer = &opt, .metadata = meta}, world);
  }
  world.barrier();
  if (world.rank() == 0) {
    // The same entries in the same order as one process's file, values to float32 rounding.
    const nn::Checkpoint sharded = nn::read_checkpoint(path), whole = nn::read_checkpoint(alone_path);
    const auto same = [](const nn::StateDict& a, const nn::StateDict& b) {
      REQUIRE(a.keys() == b.keys());
      for (const auto& [key, value] : a.items()) {
        CAPTURE(key);
        const nn::StateValue& other = *b.find(key);
        REQUIRE(value.index() == other.index());
        if (const Tensor* t = std::get_if<Tensor>(&value))
          CHECK(max_abs_diff(t->to_vector<float>(), std::get<Tensor>(other).to_vector<float>()) < 1e-5);
        else if (const double* x = std::get_if<double>(&value))
          CHECK(*x == std::get<double>(other));
        else if (const std::int64_t* i = std::get_if<std::int64_t>(&value))
          CHECK(*i == std::get<std::int64_t>(other));
        else
          CHECK(std::get<std::string>(value) == std::get<std::string>(other));
      }
    };
    same(sharded.model, whole.model);
    same(sharded.optimizer, whole.optimizer);
  }

  for (int size : {1, 2, 4}) {
    if (size > world.size()) continue;
    CAPTURE(size);
    auto part = world.split(world.rank() < size ? 0 : MPI_UNDEFINED, world.rank());
    if (!part) continue;
    Generator gen(99);  // other initial values: all must come from the file
    MoENet net(gen);
    dist::ExpertParallel ep(net.moe, *part);
    dist::DataParallel dp(net, *part, {.broadcast = false});
    nn::Adam opt(net.parameters(), {.lr = 0.01});
    const nn::LoadedCheckpoint loaded = dist::load_checkpoint(path, net, {.optimizer = &opt}, *part);
    for (int step = static_cast<int>(loaded.metadata.integer("step")); step < 5; ++step)
      moe_step(net, opt, dp, *part, step);
    CHECK(max_abs_diff_by_name(net, ref_net) < 1e-5);
  }
  world.barrier();
  if (world.rank() == 0) {
    std::remove(path.c_str());
    std::remove(alone_path.c_str());
  }
}

TEST_CASE("dist checkpoints: saved at the full world size, resumed at any size, as if never stopped") {
  dist::Communicator& world = dist::world();
  // A path every rank agrees on: rank 0's pid.
  std::int64_t pid = getpid();
  world.broadcast(std::span<std::int64_t>(&pid, 1), 0);
  const std::string path = "/tmp/ladon-dist-test-" + std::to_string(pid) + ".ckpt";

  // Uninterrupted reference: 5 steps on one rank each, no communication at all.
  std::vector<float> reference;
  {
    auto alone = world.split(world.rank(), 0);
    Generator gen(21);
    Net net(gen);
    nn::Adam opt(net.parameters(), {.lr = 0.01});
    dist::DataParallel dp(net, *alone);
    for (int step = 0; step < 5; ++step) train_step(net, opt, dp, *alone, step);
    reference = flat_parameters(net);
  }

  {  // 3 steps at the full world size, then save.
    Generator gen(21);
    Net net(gen);
    nn::Adam opt(net.parameters(), {.lr = 0.01});
    dist::DataParallel dp(net, world);
    for (int step = 0; step < 3; ++step) train_step(net, opt, dp, world, step);
    nn::StateDict meta;
    meta.set("step", std::int64_t{3});
    dist::save_checkpoint(path, net, {.optimizer = &opt, .metadata = meta}, world);
  }

  // Resume at every smaller world size that divides the batch: the first `size` ranks form it.
  for (int size : {1, 2, 4}) {
    if (size > world.size()) continue;
    CAPTURE(size);
    auto part = world.split(world.rank() < size ? 0 : MPI_UNDEFINED, world.rank());
    if (!part) continue;
    Generator gen(99);  // other initial values: all must come from the file
    Net net(gen);
    nn::Adam opt(net.parameters(), {.lr = 0.01});
    dist::DataParallel dp(net, *part, {.broadcast = false});
    const nn::LoadedCheckpoint loaded = dist::load_checkpoint(path, net, {.optimizer = &opt}, *part);
    for (int step = static_cast<int>(loaded.metadata.integer("step")); step < 5; ++step)
      train_step(net, opt, dp, *part, step);
    CHECK(max_abs_diff(flat_parameters(net), reference) < 1e-5);
  }
  world.barrier();
  if (world.rank() == 0) std::remove(path.c_str());
}

TEST_CASE("dist checkpoints: a file missing on one rank is an error on every rank") {
  dist::Communicator& world = dist::world();
  std::int64_t pid = getpid();
  world.broadcast(std::span<std::int64_t>(&pid, 1), 0);
  const std::string path = "/tmp/ladon-dist-test-missing-" + std::to_string(pid) + ".ckpt";
  Generator gen(1);
  Net net(gen);
  dist::save_checkpoint(path, net, {}, world);
  // The last rank looks elsewhere, as on a node without the shared file system.
  const std::string mine = world.rank() == world.size() - 1 ? path + ".elsewhere" : path;
  std::string message;
  try {
    dist::load_checkpoint(mine, net, {}, world);
  } catch (const Error& e) {
    message = e.what();
  }
  CHECK(message.find(".elsewhere") != std::string::npos);
  if (world.rank() != world.size() - 1)
    CHECK(message.find("(on rank " + std::to_string(world.size() - 1) + ")") != std::string::npos);
  world.barrier();
  if (world.rank() == 0) std::remove(path.c_str());
}
