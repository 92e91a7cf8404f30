// Relative tolerance for the nn tests. doctest::Approx's default scale of 1 turns epsilon into an
// absolute tolerance for values below 1 (Approx(0.06).epsilon(0.03) accepts 0.08); scale 0 makes it
// relative. Expected values must be non-zero (the comparison is strict).
#pragma once

#include <doctest/doctest.h>

namespace ladon::testing {
inline doctest::Approx rel(double expected, double rtol) { return doctest::Approx(expected).epsilon(rtol).scale(0); }
}  // namespace ladon::testing
