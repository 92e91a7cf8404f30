// Data-parallel scaling of the mmoe training step (the train_step bench's mmoe: 512 inputs, 8
// experts of 256, three towers of 64, MSE per task, equal weights, Adam) at a fixed global batch:
//
//   mpirun -np 1 bench/dist_scaling --batch 1024 --threads 1
//   mpirun -np 2 bench/dist_scaling --batch 1024 --threads 1    (each rank 512 rows)
//
// Rank 0 prints a line: ranks, global batch, ms per step, samples/s, and for the gradient
// averaging: the allreduce time alone (the same buckets with nothing to overlap), the time
// backward waited for it after its own work was done (exposed), and the share hidden behind
// backward, 1 - exposed / alone; then a second line with its own step split into phases.
// scripts/bench_dist runs both, interleaved, and takes medians. With one rank the step runs
// without DataParallel: the baseline is a plain single process.
// --first_bucket_mb (default 1) and --bucket_mb (25) set DataParallel's buckets; with
// --first_bucket_mb 25 this model's 4.4 MB of gradients (1.1 M parameters) fill one bucket, which starts only when
// backward has ended.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "dist/dist.h"
#include "ladon.h"

using namespace ladon;

namespace {
double now() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }
}  // namespace

int main(int argc, char** argv) {
  dist::Environment mpi(argc, argv);
  dist::Communicator& world = dist::world();
  std::int64_t batch = 1024, threads = 1, steps = 30, warmup = 5;
  double bucket_mb = 25, first_bucket_mb = 1;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i];
    const double v = std::atof(argv[i + 1]);
    if (k == "--batch")
      batch = static_cast<std::int64_t>(v);
    else if (k == "--threads")
      threads = static_cast<std::int64_t>(v);
    else if (k == "--steps")
      steps = static_cast<std::int64_t>(v);
    else if (k == "--bucket_mb")
      bucket_mb = v;
    else if (k == "--first_bucket_mb")
      first_bucket_mb = v;
    else
      throw Error("dist_scaling: unknown flag " + k + " (--batch, --threads, --steps, --bucket_mb, --first_bucket_mb)");
  }
  LADON_CHECK(batch % world.size() == 0, "dist_scaling", "--batch ", batch, " does not split over ", world.size(),
              " ranks");
  set_num_threads(static_cast<int>(threads));
  const std::int64_t local = batch / world.size(), in = 512;

  Generator gen(1);
  std::vector<mtl::TaskSpec> tasks;
  for (const char* name : {"t0", "t1", "t2"}) tasks.push_back({name, 1, {64}, mtl::TaskKind::regression});
  mtl::MMoE model(mtl::MoEOptions{.in = in, .experts = 8, .expert_hidden = {256}, .tasks = tasks}, gen);
  dist::DataParallel dp(model, world, {.bucket_mb = bucket_mb, .first_bucket_mb = first_bucket_mb});
  nn::Adam opt(model.parameters(), {.lr = 1e-3});
  Generator data(42 + static_cast<std::uint64_t>(world.rank()));  // each rank its own rows
  const Tensor x = randn({local, in}, data);
  std::vector<Tensor> targets;
  for (int t = 0; t < 3; ++t) targets.push_back(randn({local, 1}, data));

  double start = 0, exposed = 0, forward = 0, backward = 0, optimizer = 0;
  for (std::int64_t step = 0; step < warmup + steps; ++step) {
    if (step == warmup) {
      world.barrier();
      start = now();
      exposed = forward = backward = optimizer = 0;
    }
    const double t0 = now();
    const std::vector<Tensor> out = model(x);
    Tensor loss = nn::mse_loss(out[0], targets[0]);
    for (std::size_t t = 1; t < out.size(); ++t) loss = loss + nn::mse_loss(out[t], targets[t]);
    opt.zero_grad();
    const double t1 = now();
    // One rank is the baseline: a single process, so no DataParallel (whose copies into the
    // buckets and back would cost it about 0.2 ms a step for nothing).
    if (world.size() > 1)
      dp.backward(loss);
    else
      loss.backward();
    const double t2 = now();
    opt.step();
    forward += t1 - t0;
    const double wait = world.size() > 1 ? dp.last_timing().exposed_wait_seconds : 0.0;
    backward += t2 - t1 - wait;
    exposed += wait;
    optimizer += now() - t2;
  }
  world.barrier();
  const double seconds = now() - start;
  // The allreduce alone: the same buckets, started together after a barrier, nothing to overlap.
  double alone = 0;
  for (int i = 0; i < 10 && world.size() > 1; ++i) {
    world.barrier();
    dp.synchronize();
    alone += dp.last_timing().backward_seconds;
  }
  alone /= 10;
  if (world.rank() != 0) return 0;
  const auto ms = [&](double total) { return 1e3 * total / static_cast<double>(steps); };
  const double per_step = seconds / static_cast<double>(steps), per_exposed = exposed / static_cast<double>(steps);
  std::printf(
      "ranks %d batch %lld threads %lld buckets %zu ms/step %.3f samples/s %.1f allreduce_ms %.3f exposed_ms %.3f "
      "hidden %.3f\n",
      world.size(), static_cast<long long>(batch), static_cast<long long>(threads), dp.num_buckets(), 1e3 * per_step,
      static_cast<double>(batch) / per_step, 1e3 * alone, 1e3 * per_exposed,
      world.size() > 1 && alone > 0 ? std::max(0.0, 1.0 - per_exposed / alone) : 0.0);
  // Rank 0's step split: forward (with the loss and zero_grad), local backward (backward() less
  // the wait after it), and the optimizer step.
  std::printf("phases_ms forward %.3f backward %.3f exposed %.3f optimizer %.3f\n", ms(forward), ms(backward),
              ms(exposed), ms(optimizer));
  return 0;
}
