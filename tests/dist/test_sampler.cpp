#include <doctest/doctest.h>

#include <set>

#include "helpers.h"

using namespace ladon;
using namespace ladon::testing;

TEST_CASE("DistributedSampler: shards are disjoint, cover the epoch, and reshuffle per epoch") {
  dist::Communicator& world = dist::world();
  const std::int64_t rows = 10;  // not divisible by 4
  for (dist::Uneven uneven : {dist::Uneven::drop, dist::Uneven::pad}) {
    dist::DistributedSampler sampler(rows, world, {.seed = 3, .uneven = uneven});
    const std::int64_t per_rank =
        uneven == dist::Uneven::drop ? rows / world.size() : (rows + world.size() - 1) / world.size();
    CHECK(sampler.shard_rows() == per_rank);
    for (std::int64_t epoch : {0, 1}) {
      const std::vector<std::int64_t> mine = sampler.indices(epoch);
      REQUIRE(static_cast<std::int64_t>(mine.size()) == per_rank);
      std::vector<float> as_float(mine.begin(), mine.end());
      const std::vector<float> all = world.allgatherv(as_float);
      // The ranks' positions interleave: position i * W + r of one shared permutation.
      Generator gen(3 + static_cast<std::uint64_t>(epoch));
      const std::vector<std::int64_t> perm = randperm(rows, gen).to_vector<std::int64_t>();
      for (int r = 0; r < world.size(); ++r)
        for (std::int64_t i = 0; i < per_rank; ++i)
          CHECK(all[static_cast<std::size_t>(r * per_rank + i)] ==
                static_cast<float>(perm[static_cast<std::size_t>((i * world.size() + r) % rows)]));
      const std::set<float> distinct(all.begin(), all.end());
      if (uneven == dist::Uneven::drop)
        CHECK(distinct.size() == all.size());  // nothing twice
      else
        CHECK(distinct.size() == static_cast<std::size_t>(rows));  // everything at least once
    }
    CHECK(sampler.indices(0) != sampler.indices(1));
  }
}

TEST_CASE("DistributedSampler: the ranks' i-th local batches together are one process's i-th batch") {
  dist::Communicator& world = dist::world();
  const std::int64_t rows = 24, local = 3;
  Generator gen(9);
  data::Dataset ds{randn({rows, 2}, gen), {randperm(rows, gen)}, {"t"}};
  dist::DistributedSampler sampler(rows, world, {.seed = 4});
  dist::DistributedSampler whole(rows, 0, 1, {.seed = 4});
  const data::Dataset mine = sampler.shard(ds, 2), all = whole.shard(ds, 2);
  const std::int64_t batches = rows / (local * world.size());
  const std::vector<std::int64_t> whole_y = all.y[0].to_vector<std::int64_t>();
  std::int64_t b = 0;
  for (const data::Batch& batch : data::Loader(mine, {.batch = local})) {
    const std::vector<std::int64_t> y = batch.y[0].to_vector<std::int64_t>();
    const std::vector<float> gathered = world.allgatherv(std::vector<float>(y.begin(), y.end()));
    const std::multiset<float> got(gathered.begin(), gathered.end());
    const auto first = whole_y.begin() + b * local * world.size();
    const std::multiset<float> expected(first, first + local * world.size());
    CHECK(got == expected);
    ++b;
  }
  CHECK(b == batches);
}

TEST_CASE("DistributedSampler: bad arguments name the problem") {
  CHECK_THROWS_WITH_AS(dist::DistributedSampler(3, 4, 4), "DistributedSampler: rank 4 of a world of 4", Error);
  CHECK_THROWS_WITH_AS(dist::DistributedSampler(3, 0, 4, {.uneven = dist::Uneven::drop}),
                       "DistributedSampler: 3 rows for 4 ranks: with Uneven::drop every rank would get none", Error);
  dist::DistributedSampler sampler(5, 0, 2);
  Generator gen(1);
  data::Dataset ds{randn({4, 2}, gen), {}, {}};
  CHECK_THROWS_WITH_AS(sampler.shard(ds, 0),
                       "DistributedSampler::shard: dataset has 4 rows, the sampler was made for 5", Error);
}
