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
#pragma once

#include "layer_fence.h"

#include "../mtl/balancer.h"
#include "comm.h"

namespace ladon::dist {

class MpiCollective : public mtl::Collective {
 public:
  // Works on a duplicate of comm's communicator: the balancer's averages never match another's.
  explicit MpiCollective(Communicator& comm = world()) : comm_(comm.handle()) {}
  void average(std::span<double> values) override;
  void average(std::span<float> values) override;
  int ranks() const override { return comm_.size(); }

 private:
  Communicator comm_;
};

}  // namespace ladon::dist
