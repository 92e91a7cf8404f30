// Expert parallelism for mtl::SparseMoE: each rank routes its own tokens, the experts are split
// across ranks in contiguous blocks (rank r owns experts [r E / W, (r + 1) E / W)), and every
// routed row travels to its expert's owner and back:
//   1. the per-expert row counts of every rank are exchanged (MPI_Allgather), so every rank knows
//      what it sends and receives;
//   2. the rows go to their owners in one MPI_Alltoallv; each owner runs its experts on the rows
//      of all ranks at once;
//   3. the outputs return by the reverse MPI_Alltoallv and are combined by the layer as usual.
// Backward is the same exchange reversed: the gradient of 3 travels like 2 and the gradient of 2
// like 3. Both capacity and dropless modes work (capacity is applied per rank before dispatch),
// and the balance losses are computed from the global routing (sums over every rank's tokens).
//
//   mtl::SparseMoE moe(options);              // same seed on every rank: same initial experts
//   dist::ExpertParallel ep(moe, world);      // moe.set_dispatch(&ep); moe keeps only its experts
//   dist::DataParallel dp(model, world);      // averages everything else, as data parallel
//   nn::Adam opt(model.parameters(), ...);    // after ep: steps this rank's experts only
//
// Parameters are sharded: the constructor calls moe.hold_experts on this rank's block, so each
// rank keeps (and its optimizer steps) only its own experts, and the expert parameter memory per
// rank falls as 1/W. Build the optimizer after the ExpertParallel. An expert's gradient is
// computed on its owner alone, from the tokens of every rank; DataParallel finds the sharded
// layers in the model, leaves their experts out of its allreduce, and divides those gradients by
// the world size (each rank's loss is the mean over its share of the batch), so the owner takes
// the step one process would. dist::save_checkpoint gathers the shards to rank 0 into the file one
// process would write, and dist::load_checkpoint at any world size gives each rank its experts.
//
// Every rank must run every forward and backward of the layer (the exchanges are collective).
#pragma once

#include "layer_fence.h"

#include <string>
#include <vector>

#include "../mtl/sparse_moe.h"
#include "comm.h"
#include "ops.h"

namespace ladon::dist {

class ExpertParallel : public mtl::ExpertDispatch {
 public:
  ExpertParallel(mtl::SparseMoE& layer, Communicator& comm = world());
  ~ExpertParallel() override;
  ExpertParallel(const ExpertParallel&) = delete;
  ExpertParallel& operator=(const ExpertParallel&) = delete;

  int owner(std::int64_t expert) const;                 // the rank that runs this expert
  std::int64_t first_expert(int rank) const;            // rank's experts are [first(r), first(r + 1))
  std::int64_t rows_computed() const { return rows_; }  // rows this rank's experts ran on last forward

  std::vector<Tensor> run(mtl::SparseMoE& layer, const std::vector<Tensor>& routed) override;
  Tensor sum_over_tokens(const Tensor& x) override;

 private:
  mtl::SparseMoE& layer_;
  Communicator& comm_;
  std::int64_t rows_ = 0;
};

// A SparseMoE of a model whose experts an ExpertParallel shards, under its dotted name in the
// model ("" for the model itself).
struct ShardedLayer {
  std::string name;
  mtl::SparseMoE* layer;
};
// Every such layer of model, in visit order.
std::vector<ShardedLayer> sharded_layers(nn::Module& model);
// The parameters of model only this rank holds: the experts of its sharded layers it owns.
std::vector<Tensor> rank_local_parameters(nn::Module& model);

}  // namespace ladon::dist
