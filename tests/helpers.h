// Helpers the test files share: a tensor's values as a vector, reach a parameter by its dotted
// name, overwrite a tensor's values.
#pragma once

#include <doctest/doctest.h>

#include <algorithm>
#include <string>
#include <vector>

#include "ladon.h"

namespace ladon::testing {

// A float32 tensor's elements in row-major order, for comparing against hand-worked numbers.
inline std::vector<float> values(const Tensor& t) { return t.to_vector<float>(); }

inline Tensor parameter(nn::Module& module, const std::string& name) {
  for (auto& [n, t] : module.named_parameters())
    if (n == name) return t;
  FAIL("no parameter " << name);
  return {};
}

// Writes v into t in place (t must be contiguous with v.size() elements).
inline void set_values(Tensor t, const std::vector<float>& v) {
  REQUIRE(static_cast<std::int64_t>(v.size()) == t.numel());
  std::copy(v.begin(), v.end(), t.data<float>());
}

}  // namespace ladon::testing
