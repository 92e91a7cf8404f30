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

}  // namespace

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
