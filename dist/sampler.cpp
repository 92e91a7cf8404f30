#include "sampler.h"

#include <algorithm>
#include <cstring>
#include <numeric>

#include "../core/error.h"
#include "../core/random.h"
#include "comm.h"

namespace ladon::dist {

namespace {
// The given rows of t (float32 or int64, any row shape), copied.
Tensor gather_rows(const Tensor& t, const std::vector<std::int64_t>& rows) {
  const Tensor src = t.contiguous();
  Shape shape = src.shape();
  shape[0] = static_cast<std::int64_t>(rows.size());
  Tensor out = empty(shape, src.dtype());
  const std::size_t element = src.dtype() == Dtype::int64 ? sizeof(std::int64_t) : sizeof(float);
  const std::size_t row_bytes =
      static_cast<std::size_t>(src.numel() / std::max<std::int64_t>(src.size(0), 1)) * element;
  const char* from = src.dtype() == Dtype::int64 ? reinterpret_cast<const char*>(src.data<std::int64_t>())
                                                 : reinterpret_cast<const char*>(src.data<float>());
  char* to = out.dtype() == Dtype::int64 ? reinterpret_cast<char*>(out.data<std::int64_t>())
                                         : reinterpret_cast<char*>(out.data<float>());
  for (std::size_t i = 0; i < rows.size(); ++i)
    std::memcpy(to + i * row_bytes, from + static_cast<std::size_t>(rows[i]) * row_bytes, row_bytes);
  return out;
}
}  // namespace

DistributedSampler::DistributedSampler(std::int64_t rows, int rank, int world_size, SamplerOptions options)
    : rows_(rows), rank_(rank), world_(world_size), options_(options) {
  LADON_CHECK(world_size >= 1 && rank >= 0 && rank < world_size, "DistributedSampler", "rank ", rank, " of a world of ",
              world_size);
  LADON_CHECK(rows >= 0, "DistributedSampler", "rows must be non-negative, got ", rows);
  LADON_CHECK(options.uneven == Uneven::pad || rows >= world_size, "DistributedSampler", rows, " rows for ", world_size,
              " ranks: with Uneven::drop every rank would get none");
  LADON_CHECK(options.uneven == Uneven::drop || rows > 0 || world_size == 1, "DistributedSampler",
              "no rows to pad from for ", world_size, " ranks");
}

DistributedSampler::DistributedSampler(std::int64_t rows, const Communicator& comm, SamplerOptions options)
    : DistributedSampler(rows, comm.rank(), comm.size(), options) {}

std::int64_t DistributedSampler::shard_rows() const {
  return options_.uneven == Uneven::drop ? rows_ / world_ : (rows_ + world_ - 1) / world_;
}

std::vector<std::int64_t> DistributedSampler::indices(std::int64_t epoch) const {
  std::vector<std::int64_t> order(static_cast<std::size_t>(rows_));
  if (options_.shuffle) {
    Generator gen(options_.seed + static_cast<std::uint64_t>(epoch));
    order = randperm(rows_, gen).to_vector<std::int64_t>();
  } else {
    std::iota(order.begin(), order.end(), std::int64_t{0});
  }
  const std::int64_t n = shard_rows();
  std::vector<std::int64_t> mine(static_cast<std::size_t>(n));
  for (std::int64_t i = 0; i < n; ++i) {
    const std::int64_t position = i * world_ + rank_;  // < rows_ under drop; may wrap under pad
    mine[static_cast<std::size_t>(i)] = order[static_cast<std::size_t>(position % rows_)];
  }
  return mine;
}

data::Dataset DistributedSampler::shard(const data::Dataset& dataset, std::int64_t epoch) const {
  data::check_dataset(dataset, "DistributedSampler::shard");
  LADON_CHECK(dataset.size() == rows_, "DistributedSampler::shard", "dataset has ", dataset.size(),
              " rows, the sampler was made for ", rows_);
  const std::vector<std::int64_t> rows = indices(epoch);
  data::Dataset out;
  out.x = gather_rows(dataset.x, rows);
  for (const Tensor& y : dataset.y) out.y.push_back(gather_rows(y, rows));
  out.task_names = dataset.task_names;
  return out;
}

}  // namespace ladon::dist
