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
//   dist::ExpertParallel ep(moe, world);      // moe.set_dispatch(&ep) until ep is destroyed
//   dist::DataParallel dp(model, world);      // averages everything else, as data parallel
//
// Parameters: every rank keeps a copy of every expert. An expert's gradient is computed only on
// its owner (from the tokens of every rank) and DataParallel's averaging then delivers it,
// divided by the world size like every other gradient, to every rank, so all copies take the
// same optimizer step and a checkpoint from rank 0 holds every expert, for any world size. What is
// sharded is the expert computation and the tokens, not the parameter memory.
//
// Every rank must run every forward and backward of the layer (the exchanges are collective).
#pragma once

#include "layer_fence.h"

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

}  // namespace ladon::dist
