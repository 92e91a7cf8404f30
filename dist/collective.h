// The mtl::Collective a Balancer takes, over MPI: with it, every rank's balancer decides from the
// loss values and task gradients of the whole global batch, so all ranks apply the same weights.
//
//   dist::MpiCollective collective(world);
//   mtl::PCGrad balancer(model.num_tasks(), /*seed=*/3);   // the same seed on every rank
//   balancer.set_collective(&collective);
//   ...
//   opt.zero_grad();
//   balancer.backward(losses, model);   // shared gradients: the combination of the global task gradients
//   dp.synchronize();                   // task-specific gradients: averaged like any other
//   opt.step();
//
// Reduce-scatter (MpiCollectiveOptions::reduce_scatter): for the gradient methods (PCGrad, MGDA,
// CAGrad, ... every mtl::GradientBalancer) the T per-task shared gradients are reduce-scattered
// instead of allreduced: rank r receives the average of columns [r n / W, (r + 1) n / W) of all T
// rows only. The T x T Gramian is the sum of the ranks' Gramians of their column blocks (one
// allreduce of T * T doubles), so every rank decides the same weights; each rank combines its
// block, and the combined gradient (n values, not T n) is allgathered. Per step that moves
// (T + 1) n values each way instead of the allreduce's 2 T n, and the Gramian and the combination
// cost 1 / W of the work per rank. The result equals the allreduce path to float32 rounding (the
// dot products are summed in another order).
#pragma once

#include "layer_fence.h"

#include "../mtl/balancer.h"
#include "comm.h"

namespace ladon::dist {

struct MpiCollectiveOptions {
  bool reduce_scatter = false;  // shard the task gradients across ranks (above)
};

class MpiCollective : public mtl::Collective {
 public:
  // Works on a duplicate of comm's communicator: the balancer's averages never match another's.
  explicit MpiCollective(Communicator& comm = world(), MpiCollectiveOptions options = {})
      : comm_(comm.handle()), options_(options) {}
  void average(std::span<double> values) override;
  void average(std::span<float> values) override;
  int ranks() const override { return comm_.size(); }
  Columns average_columns(std::span<float> values, std::int64_t rows) override;
  void gather_columns(std::span<float> values, Columns mine) override;

 private:
  // Rank r's block of n columns: [r n / W, (r + 1) n / W).
  std::int64_t block_start(int rank, std::int64_t n) const { return rank * n / comm_.size(); }
  Communicator comm_;
  MpiCollectiveOptions options_;
};

}  // namespace ladon::dist
