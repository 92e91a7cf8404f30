#include <doctest/doctest.h>

#include "ladon.h"
#include "mtl/pruning.h"

using namespace ladon;

TEST_CASE("magnitude pruning: global threshold, masks kept through training") {
  Tensor a = tensor({0.1f, -2, 0.3f, 4}).requires_grad_();
  Tensor b = tensor({-0.2f, 5}).requires_grad_();
  mtl::MagnitudePruner pruner({a, b}, 0.5);
  const mtl::PruningReport r = pruner.prune();
  // |w| sorted: 0.1 0.2 0.3 2 4 5; half of 6 = the three smallest go.
  CHECK(a.to_vector<float>() == std::vector<float>{0, -2, 0, 4});
  CHECK(b.to_vector<float>() == std::vector<float>{0, 5});
  CHECK(r.parameters == 6);
  CHECK(r.nonzero_before == 6);
  CHECK(r.nonzero_after == 3);
  CHECK(r.sparsity() == doctest::Approx(0.5));
  // An optimizer step moves every weight; apply() puts the pruned ones back to zero.
  nn::SGD sgd({a, b}, {.lr = 1.0});
  sum(a * 1.0 + 0.0).backward();
  sum(b * 1.0).backward();
  sgd.step();
  pruner.apply();
  CHECK(a.to_vector<float>() == std::vector<float>{0, -3, 0, 3});
  CHECK(b.to_vector<float>() == std::vector<float>{0, 4});
}

TEST_CASE("per-tensor pruning and bad sparsity") {
  Tensor a = tensor({1, 2, 3, 4}), b = tensor({10, 20});
  mtl::MagnitudePruner({a, b}, 0.5, false).prune();
  CHECK(a.to_vector<float>() == std::vector<float>{0, 0, 3, 4});
  CHECK(b.to_vector<float>() == std::vector<float>{0, 20});
  CHECK_THROWS_WITH_AS(mtl::MagnitudePruner({a}, 1.0), "MagnitudePruner: sparsity must be in [0, 1), got 1", Error);
}
