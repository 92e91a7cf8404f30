// The README demo, data parallel over MPI: every rank trains the same MMoE on its shard of each
// global batch, gradients averaged across ranks (dist::DataParallel), so the run matches the
// single-process demo at the same global batch.
//
//   mpirun -np 2 build/examples/fashion_mtl_dist [--epochs 10] [--batch 128] [--threads 1] ...
//
// --batch is the global batch (split evenly across ranks; must divide by the number of ranks).
// Rank 0 prints the progress, the time, how much of the allreduce time backward hid, and the test
// accuracy. --steps N stops after N steps (for timing). --bucket_mb and --first_bucket_mb set the
// gradient buckets (this model's 3.8 MB of gradients: a 1 MB first bucket, whose allreduce starts
// while backward goes on, and the rest in one).
#include <algorithm>
#include <cstdio>
#include <memory>

#include "common.h"
#include "dist/dist.h"
#include "ladon.h"

using namespace ladon;

int main(int argc, char** argv) {
  dist::Environment mpi(argc, argv);  // an error on any rank ends every rank with its message
  dist::Communicator& world = dist::world();
  const examples::Flags flags(argc, argv,
                              {{"epochs", "10"},
                               {"batch", "128"},
                               {"lr", "0.001"},
                               {"threads", "1"},
                               {"seed", "1"},
                               {"steps", "0"},
                               {"bucket_mb", "25"},
                               {"first_bucket_mb", "1"},
                               {"data", "/usr/share/datasets/fashion-mnist"}},
                              "fashion_mtl_dist: data-parallel multi-task training on Fashion-MNIST over MPI");
  set_num_threads(static_cast<int>(flags.integer("threads")));
  manual_seed(static_cast<std::uint64_t>(flags.integer("seed")));
  const std::int64_t global_batch = flags.integer("batch");
  LADON_CHECK(global_batch % world.size() == 0, "fashion_mtl_dist", "--batch ", global_batch,
              " does not split evenly across ", world.size(), " ranks");
  const bool lead = world.rank() == 0;

  const data::FashionMnist fm = data::fashion_mnist(flags.str("data"));
  const std::vector<mtl::TaskSpec> tasks = {{"item", 10, {64}}, {"group", 4, {64}}};
  mtl::MMoE model(mtl::MoEOptions{784, 6, {192}, tasks});
  dist::DataParallel dp(model, world,
                        {.bucket_mb = flags.real("bucket_mb"), .first_bucket_mb = flags.real("first_bucket_mb")});
  nn::Adam optimizer(model.parameters(), {.lr = flags.real("lr")});
  dist::DistributedSampler sampler(fm.train.size(), world, {.seed = 7, .uneven = dist::Uneven::drop});
  if (lead)
    std::printf("model mmoe: %lld parameters, %lld training images, %d ranks x %d threads, global batch %lld\n",
                static_cast<long long>(model.num_parameters()), static_cast<long long>(fm.train.size()), world.size(),
                num_threads(), static_cast<long long>(global_batch));

  const long epochs = flags.integer("epochs"), max_steps = flags.integer("steps");
  const std::int64_t local_batch = global_batch / world.size();
  const std::int64_t batches = sampler.shard_rows() / local_batch;  // full batches only: every rank the same
  const long total = max_steps > 0 ? std::min<long>(max_steps, epochs * batches) : epochs * batches;
  train::Progress progress(total, {"loss"}, {.quiet = !lead});
  long step = 0, samples = 0;
  double backward_seconds = 0, exposed_seconds = 0;
  for (long epoch = 1; epoch <= epochs && step < total; ++epoch) {
    const data::Dataset shard = sampler.shard(fm.train, epoch);
    progress.start_epoch(epoch, epochs, batches);
    for (const data::Batch& batch : data::Loader(shard, {.batch = local_batch, .drop_last = true})) {
      if (step >= total) break;
      const std::vector<Tensor> out = model(batch.x);
      std::vector<Tensor> losses;
      for (std::size_t t = 0; t < tasks.size(); ++t) losses.push_back(nn::cross_entropy(out[t], batch.y[t]));
      const Tensor loss = losses[0] + losses[1];  // equal weights, as the demo's StaticWeighting::equal
      optimizer.zero_grad();
      dp.backward(loss);
      optimizer.step();
      backward_seconds += dp.last_timing().backward_seconds;
      exposed_seconds += dp.last_timing().exposed_wait_seconds;
      ++step;
      samples += global_batch;
      progress.step(global_batch, {loss.item()});  // rank 0's loss; the other ranks stay quiet
    }
  }
  const double elapsed = progress.elapsed();
  // The allreduce alone, for comparison: the same buckets averaged with nothing to overlap.
  double alone_seconds = 0;
  const int repeats = 5;
  for (int i = 0; i < repeats; ++i) {
    dp.synchronize();
    alone_seconds += dp.last_timing().backward_seconds;
  }
  if (!lead) return 0;
  progress.finish();
  const double per_step_alone = alone_seconds / repeats;
  const double per_step_exposed = exposed_seconds / static_cast<double>(step);
  std::printf("trained in %.1f s, %.0f samples/s\n", elapsed, static_cast<double>(samples) / elapsed);
  std::printf(
      "per step: backward with gradient averaging %.2f ms; allreduce alone %.2f ms, of it %.2f ms not hidden "
      "behind backward (%.0f%% hidden)\n",
      1e3 * backward_seconds / static_cast<double>(step), 1e3 * per_step_alone, 1e3 * per_step_exposed,
      per_step_alone > 0 ? 100.0 * std::max(0.0, 1.0 - per_step_exposed / per_step_alone) : 0.0);
  examples::print_results(examples::evaluate(model, fm.test));
  return 0;
}
