#include <doctest/doctest.h>

#include <cmath>

#include "helpers.h"
#include "ladon.h"

using namespace ladon;
using ladon::testing::error_message;

namespace {
Tensor ids(std::vector<std::int64_t> v) {
  const auto n = static_cast<std::int64_t>(v.size());
  return tensor(std::move(v), {n});
}
// A loss whose gradient differs per lookup, so summing repeated rows is checked.
Tensor weighted_sum(const Tensor& rows) {
  const std::int64_t n = rows.numel();
  std::vector<float> w(static_cast<std::size_t>(n));
  for (std::int64_t i = 0; i < n; ++i) w[static_cast<std::size_t>(i)] = 0.5f + static_cast<float>(i % 7);
  return sum(mul(rows, tensor(w, rows.shape())));
}
// The same with weights whose sums round: summing a row's repeats in another order changes bits.
Tensor rounding_sum(const Tensor& rows) {
  const std::int64_t n = rows.numel();
  std::vector<float> w(static_cast<std::size_t>(n));
  for (std::int64_t i = 0; i < n; ++i) w[static_cast<std::size_t>(i)] = 1.0f / static_cast<float>(3 + i % 23);
  return sum(mul(rows, tensor(w, rows.shape())));
}
}  // namespace

TEST_CASE("nn/sparse_embedding: the row-sparse gradient names the looked-up rows and equals the dense one") {
  Generator g1(3), g2(3);
  nn::Embedding dense(6, 3, {}, g1), sparse(6, 3, {.sparse = true}, g2);
  const Tensor at = ids({4, 1, 4, 0});
  weighted_sum(dense(at)).backward();
  weighted_sum(sparse(at)).backward();
  const RowGrad rg = sparse.weight.row_grad();
  REQUIRE(rg.defined());
  CHECK(rg.rows.to_vector<std::int64_t>() == std::vector<std::int64_t>{4, 1, 4, 0});  // repeats not summed yet
  CHECK(rg.values.shape() == Shape{4, 3});
  CHECK(sparse.weight.grad().to_vector<float>() == dense.weight.grad().to_vector<float>());
  CHECK(!sparse.weight.row_grad().defined());  // grad() made it dense
  // Padding rows get no gradient; two backwards accumulate both parts.
  nn::Embedding padded(5, 2, {.padding_idx = 0, .sparse = true});
  sum(padded(ids({0, 2}))).backward();
  sum(padded(ids({2, 3}))).backward();
  CHECK(padded.weight.row_grad().rows.to_vector<std::int64_t>() == std::vector<std::int64_t>{2, 2, 3});
  CHECK(padded.weight.grad().to_vector<float>() == std::vector<float>{0, 0, 0, 0, 2, 2, 1, 1, 0, 0});
}

TEST_CASE("nn/sparse_embedding: a row-sparse gradient with a row outside its table is an error") {
  CHECK(error_message([] { row_sparse_gradient(ids({0, 3}), zeros({2, 2}), {3, 2}); }) ==
        "row_sparse_gradient: row 3 is outside a table of shape [3, 2]");
  CHECK(error_message([] { row_sparse_gradient(ids({-1}), zeros({1, 2}), {3, 2}); }) ==
        "row_sparse_gradient: row -1 is outside a table of shape [3, 2]");
}

TEST_CASE("nn/sparse_embedding: EmbeddingBag and grad() give the dense gradient") {
  Generator g1(4), g2(4);
  nn::EmbeddingBag dense(5, 2, {}, g1), sparse(5, 2, {.sparse = true}, g2);
  const Tensor at = ids({1, 3, 3, 4}), starts = ids({0, 1, 1});  // bags {1}, {}, {3, 3, 4}
  weighted_sum(dense(at, starts)).backward();
  weighted_sum(sparse(at, starts)).backward();
  CHECK(sparse.weight.row_grad().rows.to_vector<std::int64_t>() == std::vector<std::int64_t>{1, 3, 3, 4});
  CHECK(sparse.weight.grad().to_vector<float>() == dense.weight.grad().to_vector<float>());
  // ladon::grad never touches .grad() and returns the dense gradient.
  nn::Embedding e(4, 2, {.sparse = true});
  const auto gs = ladon::grad({sum(e(ids({3, 3})))}, {e.weight});
  CHECK(gs[0].to_vector<float>() == std::vector<float>{0, 0, 0, 0, 0, 0, 2, 2});
  CHECK(!e.weight.grad().defined());
}

TEST_CASE("nn/sparse_embedding: SGD and Adagrad on row-sparse gradients match the dense update exactly") {
  for (int which = 0; which < 2; ++which) {
    CAPTURE(which);
    Generator g1(5), g2(5);
    nn::Embedding dense(8, 4, {}, g1), sparse(8, 4, {.sparse = true}, g2);
    std::unique_ptr<nn::Optimizer> od, os;
    if (which == 0) {
      od = std::make_unique<nn::SGD>(dense.parameters(), nn::SGDOptions{.lr = 0.1});
      os = std::make_unique<nn::SGD>(sparse.parameters(), nn::SGDOptions{.lr = 0.1});
    } else {
      od = std::make_unique<nn::Adagrad>(dense.parameters(), nn::AdagradOptions{.lr = 0.1, .lr_decay = 0.01, .initial_accumulator_value = 0.1});
      os = std::make_unique<nn::Adagrad>(sparse.parameters(), nn::AdagradOptions{.lr = 0.1, .lr_decay = 0.01, .initial_accumulator_value = 0.1});
    }
    for (const auto& at : {ids({1, 5, 1}), ids({2, 7}), ids({5, 5, 5, 0})}) {
      od->zero_grad();
      os->zero_grad();
      weighted_sum(dense(at)).backward();
      weighted_sum(sparse(at)).backward();
      od->step();
      os->step();
      CHECK(sparse.weight.to_vector<float>() == dense.weight.to_vector<float>());
    }
  }
}

TEST_CASE("nn/sparse_embedding: coalescing a large table's many repeated rows keeps the dense update exactly") {
  // Rows up to 2^17 + a few (several radix digits, the top one partly used), each batch with many
  // repeats in scattered order, and a gradient that differs per lookup and rounds when summed: the
  // repeats must be summed in lookup order, as the dense gradient sums them, for SGD and Adagrad to
  // match it bit for bit.
  // Adam's first step matches too (a dense step moves no untouched row while the moments are zero).
  const std::int64_t rows = (std::int64_t{1} << 17) + 5;
  Generator pick(11);
  std::vector<Tensor> batches;
  for (int b = 0; b < 3; ++b) {
    std::vector<std::int64_t> v;
    for (int k = 0; k < 600; ++k) {
      const std::uint64_t r = pick.below(4);  // a few hot rows, the last ones, row 0, and any
      v.push_back(r == 0 ? static_cast<std::int64_t>(pick.below(7)) * 977
                  : r == 1 ? rows - 1 - static_cast<std::int64_t>(pick.below(3))
                  : r == 2 ? 0
                           : static_cast<std::int64_t>(pick.below(static_cast<std::uint64_t>(rows))));
    }
    batches.push_back(ids(v));
  }
  for (int which = 0; which < 3; ++which) {
    CAPTURE(which);
    Generator g1(7), g2(7);
    nn::Embedding dense(rows, 3, {}, g1), sparse(rows, 3, {.sparse = true}, g2);
    std::unique_ptr<nn::Optimizer> od, os;
    if (which == 0) {
      od = std::make_unique<nn::SGD>(dense.parameters(), nn::SGDOptions{.lr = 0.1});
      os = std::make_unique<nn::SGD>(sparse.parameters(), nn::SGDOptions{.lr = 0.1});
    } else if (which == 1) {
      od = std::make_unique<nn::Adagrad>(dense.parameters(), nn::AdagradOptions{.lr = 0.1, .initial_accumulator_value = 0.1});
      os = std::make_unique<nn::Adagrad>(sparse.parameters(), nn::AdagradOptions{.lr = 0.1, .initial_accumulator_value = 0.1});
    } else {
      od = std::make_unique<nn::Adam>(dense.parameters(), nn::AdamOptions{.lr = 0.1});
      os = std::make_unique<nn::Adam>(sparse.parameters(), nn::AdamOptions{.lr = 0.1});
    }
    for (std::size_t b = 0; b < (which == 2 ? 1 : batches.size()); ++b) {
      CAPTURE(b);
      od->zero_grad();
      os->zero_grad();
      rounding_sum(dense(batches[b])).backward();
      rounding_sum(sparse(batches[b])).backward();
      od->step();
      os->step();
      CHECK(sparse.weight.to_vector<float>() == dense.weight.to_vector<float>());
    }
  }
}

TEST_CASE("nn/sparse_embedding: Adam is lazy (SparseAdam): untouched rows and their moments stay") {
  Generator g1(6), g2(6);
  nn::Embedding dense(3, 2, {}, g1), sparse(3, 2, {.sparse = true}, g2);
  nn::Adam od(dense.parameters(), {.lr = 0.1}), os(sparse.parameters(), {.lr = 0.1});
  const std::vector<float> before = sparse.weight.to_vector<float>();
  // Step 1 touches row 1 only: dense Adam moves only row 1 too (the others have zero gradient).
  sum(dense(ids({1}))).backward();
  sum(sparse(ids({1}))).backward();
  od.step();
  os.step();
  CHECK(sparse.weight.to_vector<float>() == dense.weight.to_vector<float>());
  // Step 2 touches row 2 only: dense Adam moves row 1 again by its decayed moments, lazy Adam does not.
  od.zero_grad();
  os.zero_grad();
  sum(dense(ids({2}))).backward();
  sum(sparse(ids({2}))).backward();
  od.step();
  os.step();
  const auto d = dense.weight.to_vector<float>(), s = sparse.weight.to_vector<float>();
  CHECK(s[0] == before[0]);  // row 0 never touched
  CHECK(s[2] == doctest::Approx(before[2] - 0.1));  // row 1: only its first step, lr * m / sqrt(v) = 0.1
  CHECK(d[2] != s[2]);
  // Row 2 first touched at step 2: bias correction with t = 2, m = 0.1 g, v = 0.001 g^2 ->
  // 0.1 * (0.1 / 0.19) / sqrt(0.001 / 0.001999) ~ 0.0744.
  CHECK(s[4] == doctest::Approx(before[4] - 0.1 * (0.1 / 0.19) / std::sqrt(0.001 / (1 - 0.999 * 0.999))).epsilon(1e-4));
  CHECK(s[4] == doctest::Approx(d[4]).epsilon(1e-6));
}

TEST_CASE("nn/sparse_embedding: weight decay and SGD momentum are refused for row-sparse gradients") {
  nn::Embedding e(4, 2, {.sparse = true});
  nn::Adam adam(e.parameters(), {.lr = 0.1, .weight_decay = 0.01});
  sum(e(ids({1}))).backward();
  CHECK(error_message([&] { adam.step(); }) ==
        "Adam: parameter 0 of shape [4, 2] has a row-sparse gradient; its weight decay must be 0 (got 0.01): decay would "
        "touch every row");
  nn::SGD sgd(e.parameters(), {.lr = 0.1, .momentum = 0.9});
  CHECK(error_message([&] { sgd.step(); }) == "SGD: parameter 0 has a row-sparse gradient; it needs momentum 0, got 0.9");
}
