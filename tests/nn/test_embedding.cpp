// Embedding and EmbeddingBag against lookups and pools worked out by hand (the embedding_bag op
// itself is tested in tests/core/test_ops.cpp).
#include <doctest/doctest.h>

#include "approx.h"
#include "ladon.h"
#include "nn/embedding.h"
#include "tests/helpers.h"

using namespace ladon;
using testing::values;
using ladon::testing::rel;

namespace {
Tensor idx(std::vector<std::int64_t> v, Shape shape) { return tensor(std::move(v), std::move(shape)); }
// Rows [0, 0], [1, 2], [3, 4], [5, 6].
Tensor table() { return tensor({0, 0, 1, 2, 3, 4, 5, 6}, {4, 2}).requires_grad_(); }
}  // namespace

TEST_CASE("Embedding looks rows up for indices of any shape") {
  nn::Embedding emb(4, 2);
  CHECK(emb.weight.shape() == Shape{4, 2});
  CHECK(emb.weight.requires_grad());
  emb.weight = table();
  const Tensor y = emb(idx({1, 3, 0, 1}, {2, 2}));
  CHECK(y.shape() == Shape{2, 2, 2});
  CHECK(values(y) == std::vector<float>{1, 2, 5, 6, 0, 0, 1, 2});
  sum(y).backward();
  // Each row's gradient counts its lookups: row 0 once, row 1 twice, row 2 never, row 3 once.
  CHECK(values(emb.weight.grad()) == std::vector<float>{1, 1, 2, 2, 0, 0, 1, 1});
  CHECK(emb(idx({2}, {1})).shape() == Shape{1, 2});
}

TEST_CASE("Embedding padding_idx: a zero row that never learns") {
  Generator gen(2);
  nn::Embedding emb(4, 3, {.padding_idx = -1}, gen);  // row 3
  CHECK(emb.padding_idx() == 3);
  CHECK(values(emb.weight.narrow(0, 3, 1)) == std::vector<float>{0, 0, 0});
  CHECK(sum(abs(emb.weight.narrow(0, 0, 3))).item() > 0);
  const Tensor y = emb(idx({3, 1, 3}, {3}));
  CHECK(values(y.narrow(0, 0, 1)) == std::vector<float>{0, 0, 0});
  sum(y * 2.0).backward();
  CHECK(values(emb.weight.grad()) == std::vector<float>{0, 0, 0, 2, 2, 2, 0, 0, 0, 0, 0, 0});
  CHECK_THROWS_WITH_AS(nn::Embedding(4, 3, {.padding_idx = 4}), "Embedding: padding_idx 4 is out of range for 4 embeddings",
                       Error);
}

TEST_CASE("Embedding max_norm renormalises the rows it looks up, in place") {
  nn::Embedding emb(3, 2, {.max_norm = 1.0});
  emb.weight = tensor({3, 4, 0.3f, 0.4f, 6, 8}, {3, 2}).requires_grad_();
  // Row 0 has norm 5 -> scaled by 1 / (5 + 1e-7); row 1 (norm 0.5) is within bounds; row 2 is not looked up.
  const Tensor y = emb(idx({0, 1}, {2}));
  const std::vector<float> v = values(y);
  CHECK(v[0] == rel(0.6, 1e-6));
  CHECK(v[1] == rel(0.8, 1e-6));
  CHECK(v[2] == rel(0.3, 1e-6));
  CHECK(v[3] == rel(0.4, 1e-6));
  const std::vector<float> w = values(emb.weight);
  CHECK(w[0] == rel(0.6, 1e-6));
  CHECK(w[4] == 6.0f);  // untouched
  CHECK(emb.weight.is_leaf());
}

TEST_CASE("Embedding: bad indices") {
  nn::Embedding emb(4, 2);
  CHECK_THROWS_WITH_AS(emb(idx({1, 4}, {2})), "Embedding: index 4 is out of range for 4 embeddings", Error);
  CHECK_THROWS_WITH_AS(emb(tensor({1.0f})), "Embedding: indices must be int64, got float32", Error);
}

TEST_CASE("EmbeddingBag module and bad offsets") {
  nn::EmbeddingBag bag(4, 2, {.mode = BagMode::sum});
  bag.weight = table();
  CHECK(values(bag(idx({1, 2, 3}, {3}), idx({0, 1}, {2}))) == std::vector<float>{1, 2, 8, 10});
  CHECK(bag.named_parameters()[0].first == "weight");
  CHECK_THROWS_WITH_AS(bag(idx({1, 2, 3}, {3}), idx({0, 3, 2}, {3})),
                       "embedding_bag: offsets [0, 3, 2] must start at 0, never decrease and not exceed the 3 indices",
                       Error);
  CHECK_THROWS_WITH_AS(bag(idx({1, 2, 3}, {3}), idx({1}, {1})),
                       "embedding_bag: offsets [1] must start at 0, never decrease and not exceed the 3 indices", Error);
  CHECK_THROWS_WITH_AS(bag(idx({1, 2, 3}, {3})), "embedding_bag: 1-D indices need 1-D int64 offsets", Error);
  nn::EmbeddingBag mean_bag(5, 3);
  CHECK(mean_bag(idx({0, 1, 2, 3}, {2, 2})).shape() == Shape{2, 3});
}
