#include "collective.h"

#include <algorithm>
#include <vector>

#include "../core/error.h"

namespace ladon::dist {

void MpiCollective::average(std::span<double> values) {
  comm_.allreduce_sum(values);
  const double scale = 1.0 / comm_.size();
  for (double& v : values) v *= scale;
}

void MpiCollective::average(std::span<float> values) {
  comm_.allreduce_sum(values);
  const float scale = 1.0f / static_cast<float>(comm_.size());
  for (float& v : values) v *= scale;
}

mtl::Collective::Columns MpiCollective::average_columns(std::span<float> values, std::int64_t rows) {
  if (!options_.reduce_scatter) return Collective::average_columns(values, rows);
  const std::int64_t n = rows > 0 ? static_cast<std::int64_t>(values.size()) / rows : 0;
  LADON_CHECK(rows > 0 && n * rows == static_cast<std::int64_t>(values.size()), "MpiCollective::average_columns",
              values.size(), " values are not ", rows, " rows");
  const int W = comm_.size(), me = comm_.rank();
  // MPI_Reduce_scatter wants each rank's part contiguous: pack rank by rank, each part [rows, its columns].
  std::vector<float> packed(values.size());
  std::vector<int> counts(static_cast<std::size_t>(W));
  float* out = packed.data();
  for (int r = 0; r < W; ++r) {
    const std::int64_t begin = block_start(r, n), end = block_start(r + 1, n);
    counts[static_cast<std::size_t>(r)] = static_cast<int>(rows * (end - begin));
    for (std::int64_t t = 0; t < rows; ++t)
      out = std::copy(values.data() + t * n + begin, values.data() + t * n + end, out);
  }
  const std::int64_t begin = block_start(me, n), end = block_start(me + 1, n), width = end - begin;
  std::vector<float> mine(static_cast<std::size_t>(rows * width));
  comm_.reduce_scatter_sum(packed, mine, counts);
  const float scale = 1.0f / static_cast<float>(W);
  for (std::int64_t t = 0; t < rows; ++t)
    for (std::int64_t j = 0; j < width; ++j) values[t * n + begin + j] = mine[t * width + j] * scale;
  return {begin, end, true};
}

void MpiCollective::gather_columns(std::span<float> values, Columns mine) {
  if (!mine.sharded) return;
  const auto n = static_cast<std::int64_t>(values.size());
  std::vector<int> counts(static_cast<std::size_t>(comm_.size()));
  for (int r = 0; r < comm_.size(); ++r)
    counts[static_cast<std::size_t>(r)] = static_cast<int>(block_start(r + 1, n) - block_start(r, n));
  comm_.allgather_blocks(values, counts);
}

}  // namespace ladon::dist
