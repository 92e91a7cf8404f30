// Which rows of a dataset each rank trains on, epoch by epoch.
//
//   dist::DistributedSampler sampler(train.size(), {.seed = 7, .uneven = dist::Uneven::drop});
//   for (epoch ...) {
//     data::Dataset mine = sampler.shard(train, epoch);
//     for (auto& batch : data::Loader(mine, {.batch = global_batch / world.size()})) ...
//   }
//
// Every epoch draws one permutation of all N rows from Generator(seed + epoch), the same on every
// rank, and rank r takes positions r, r + W, r + 2W, ... of it (W ranks). With the same seed, the
// union of the ranks' i-th local batches of size b is exactly the i-th batch of size b * W that a
// single process with this permutation would see, so N ranks reproduce one process.
//
// When W does not divide N, every rank must still get the same number of rows, or one rank would
// run a batch fewer and the others would wait for it forever in an allreduce. The user chooses:
//   Uneven::drop: the last N mod W positions of the permutation are left out this epoch;
//   Uneven::pad:  the permutation is extended with its own first rows to a multiple of W, so a few
//                 rows are seen twice this epoch.
// Either way every rank gets the same row count, hence the same number of batches of the same sizes.
#pragma once

#include "layer_fence.h"

#include <cstdint>
#include <vector>

#include "../data/dataset.h"

namespace ladon::dist {

class Communicator;

enum class Uneven { drop, pad };

struct SamplerOptions {
  bool shuffle = true;  // false: positions follow row order
  std::uint64_t seed = 0;
  Uneven uneven = Uneven::pad;
};

class DistributedSampler {
 public:
  DistributedSampler(std::int64_t rows, int rank, int world_size, SamplerOptions options = {});
  DistributedSampler(std::int64_t rows, const Communicator& comm, SamplerOptions options = {});

  std::vector<std::int64_t> indices(std::int64_t epoch) const;                  // this rank's rows, in order
  std::int64_t shard_rows() const;                                              // the same on every rank
  data::Dataset shard(const data::Dataset& dataset, std::int64_t epoch) const;  // those rows, copied

 private:
  std::int64_t rows_;
  int rank_, world_;
  SamplerOptions options_;
};

}  // namespace ladon::dist
