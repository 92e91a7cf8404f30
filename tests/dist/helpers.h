// What the dist/ tests share: the rows of a global batch that are this rank's, a parameter
// snapshot, and checks that every rank holds the same values.
#pragma once

#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "dist/dist.h"
#include "ladon.h"

namespace ladon::testing {

// Rows [rank * B / W, (rank + 1) * B / W) of a tensor with B rows (B divisible by W).
inline Tensor my_rows(const Tensor& t, const dist::Communicator& comm) {
  const std::int64_t b = t.size(0) / comm.size();
  REQUIRE(b * comm.size() == t.size(0));
  return t.narrow(0, comm.rank() * b, b).contiguous();
}

inline std::vector<float> flat_parameters(nn::Module& m) {
  std::vector<float> all;
  for (const Tensor& p : m.parameters()) {
    const std::vector<float> v = p.to_vector<float>();
    all.insert(all.end(), v.begin(), v.end());
  }
  return all;
}

inline double max_abs_diff(const std::vector<float>& a, const std::vector<float>& b) {
  REQUIRE(a.size() == b.size());
  double d = 0;
  for (std::size_t i = 0; i < a.size(); ++i) d = std::max(d, std::fabs(static_cast<double>(a[i]) - b[i]));
  return d;
}

// The largest difference between model's parameters and reference's of the same names (model may
// hold a shard of them: an expert-parallel rank's own experts).
inline double max_abs_diff_by_name(nn::Module& model, nn::Module& reference) {
  const auto theirs = reference.named_parameters();
  double d = 0;
  for (const auto& [name, p] : model.named_parameters()) {
    const auto it = std::find_if(theirs.begin(), theirs.end(), [&](const auto& e) { return e.first == name; });
    REQUIRE(it != theirs.end());
    d = std::max(d, max_abs_diff(p.to_vector<float>(), it->second.to_vector<float>()));
  }
  return d;
}

// True when every rank passed the same values, bit for bit.
inline bool same_on_every_rank(const std::vector<float>& values, dist::Communicator& comm) {
  const std::vector<float> all = comm.allgatherv(values);
  REQUIRE(all.size() == values.size() * static_cast<std::size_t>(comm.size()));
  for (int r = 0; r < comm.size(); ++r)
    if (!std::equal(values.begin(), values.end(), all.begin() + static_cast<std::ptrdiff_t>(r * values.size())))
      return false;
  return true;
}

}  // namespace ladon::testing
