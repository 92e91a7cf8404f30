// Forward values worked out by hand, and error messages for bad input.
#include <doctest/doctest.h>

#include <cmath>

#include "ladon.h"
#include "tests/helpers.h"

using namespace ladon;
using testing::values;

namespace {
void check_close(const Tensor& t, const std::vector<float>& expected, double tol = 1e-5) {
  const std::vector<float> v = values(t);
  REQUIRE(v.size() == expected.size());
  for (std::size_t i = 0; i < v.size(); ++i) CHECK(v[i] == doctest::Approx(expected[i]).epsilon(tol));
}
}  // namespace

TEST_CASE("binary ops broadcast like NumPy") {
  const Tensor a = tensor({1, 2, 3, 4, 5, 6}, {2, 3});
  const Tensor col = tensor({10, 20}, {2, 1});
  const Tensor row = tensor({1, 0, -1}, {3});
  CHECK(values(a + col) == std::vector<float>{11, 12, 13, 24, 25, 26});
  CHECK(values(a * row) == std::vector<float>{1, 0, -3, 4, 0, -6});
  CHECK(values(a - 1.0) == std::vector<float>{0, 1, 2, 3, 4, 5});
  CHECK(values(1.0 - a) == std::vector<float>{0, -1, -2, -3, -4, -5});
  CHECK(values(a / 2.0) == std::vector<float>{0.5f, 1, 1.5f, 2, 2.5f, 3});
  CHECK((col + row).shape() == Shape{2, 3});
  CHECK(values(pow(a, 2.0)) == std::vector<float>{1, 4, 9, 16, 25, 36});
  CHECK(values(maximum(a, scalar(3.5))) == std::vector<float>{3.5f, 3.5f, 3.5f, 4, 5, 6});
  CHECK(values(minimum(a, scalar(3.5))) == std::vector<float>{1, 2, 3, 3.5f, 3.5f, 3.5f});
  CHECK_THROWS_WITH_AS(add(a, tensor({1, 2}, {2})), "add: [2, 3] and [2] do not broadcast (dim 1: 3 vs 2)", Error);
  CHECK_THROWS_WITH_AS(mul(a, arange(3)), "mul: expected a float32 tensor, got int64 of shape [3]", Error);
}

TEST_CASE("large elementwise ops split across threads agree with the serial result") {
  const Tensor x = arange(0.0, 300000.0);
  const Tensor y = x * 2.0 + 1.0;
  const std::vector<float> v = values(y);
  bool ok = true;
  for (std::size_t i = 0; i < v.size(); ++i) ok &= v[i] == static_cast<float>(2 * i + 1);
  CHECK(ok);
  CHECK(sum(ones({1000, 300})).item() == 300000.0);
}

TEST_CASE("unary ops") {
  const Tensor x = tensor({-2.0f, -0.5f, 0.0f, 1.0f});
  check_close(exp(x), {std::exp(-2.0f), std::exp(-0.5f), 1.0f, std::exp(1.0f)});
  CHECK(values(abs(x)) == std::vector<float>{2, 0.5f, 0, 1});
  CHECK(values(relu(x)) == std::vector<float>{0, 0, 0, 1});
  CHECK(values(neg(x)) == std::vector<float>{2, 0.5f, -0.0f, -1});
  check_close(sigmoid(x), {1 / (1 + std::exp(2.0f)), 1 / (1 + std::exp(0.5f)), 0.5f, 1 / (1 + std::exp(-1.0f))});
  check_close(tanh(x), {std::tanh(-2.0f), std::tanh(-0.5f), 0.0f, std::tanh(1.0f)});
  // gelu(1) exact: 0.5 * (1 + erf(1 / sqrt 2)) = 0.8413447; gelu(-1) = -(1 - 0.8413447) = -0.1586553.
  check_close(gelu(tensor({1.0f, -1.0f})), {0.8413447f, -0.1586553f});
  // With the tanh approximation: 0.5 * (1 + tanh(0.79788456 * 1.044715)) = 0.841192
  CHECK(gelu(tensor({1.0f}), Gelu::tanh).item() == doctest::Approx(0.841192).epsilon(1e-5));
  CHECK(values(clamp(x, -1.0, 0.5)) == std::vector<float>{-1, -0.5f, 0, 0.5f});
  check_close(sqrt(tensor({4.0f, 2.0f})), {2.0f, std::sqrt(2.0f)});
  check_close(log(tensor({1.0f, std::exp(2.0f)})), {0.0f, 2.0f});
}

TEST_CASE("reductions") {
  const Tensor a = tensor({1, 2, 3, 4, 5, 6}, {2, 3});
  CHECK(sum(a).item() == 21.0);
  CHECK(values(sum(a, {0})) == std::vector<float>{5, 7, 9});
  CHECK(values(sum(a, {1})) == std::vector<float>{6, 15});
  CHECK(sum(a, {1}, true).shape() == Shape{2, 1});
  CHECK(values(mean(a, {0})) == std::vector<float>{2.5f, 3.5f, 4.5f});
  CHECK(values(sum(a.t(), {0})) == std::vector<float>{6, 15});
  const Tensor b = arange(0.0, 24.0).reshape({2, 3, 4});
  CHECK(values(sum(b, {0, 2})) == std::vector<float>{0 + 1 + 2 + 3 + 12 + 13 + 14 + 15, 4 + 5 + 6 + 7 + 16 + 17 + 18 + 19,
                                                     8 + 9 + 10 + 11 + 20 + 21 + 22 + 23});
  const Tensor m = tensor({3, 9, 2, 7, 1, 8}, {2, 3});
  auto [v, i] = max(m, 1);
  CHECK(values(v) == std::vector<float>{9, 8});
  CHECK(i.to_vector<std::int64_t>() == std::vector<std::int64_t>{1, 2});
  CHECK(argmax(m, 0).to_vector<std::int64_t>() == std::vector<std::int64_t>{1, 0, 1});
  CHECK(max(m).item() == 9.0);
  CHECK_THROWS_WITH_AS(sum(a, {2}), "sum: dim 2 is out of range for a tensor of rank 2", Error);
  CHECK_THROWS_WITH_AS(sum(a, {1, -1}), "sum: dim -1 given twice", Error);
}

TEST_CASE("matmul") {
  const Tensor a = tensor({1, 2, 3, 4, 5, 6}, {2, 3});
  const Tensor b = tensor({1, 0, 0, 1, 1, 1}, {3, 2});
  CHECK(values(matmul(a, b)) == std::vector<float>{4, 5, 10, 11});
  CHECK(values(matmul(a, a.t())) == std::vector<float>{14, 32, 32, 77});
  CHECK(values(matmul(a.t(), a)) == std::vector<float>{17, 22, 27, 22, 29, 36, 27, 36, 45});
  const Tensor batch = stack({a, a * 2.0}, 0);
  CHECK(values(matmul(batch, b)) == std::vector<float>{4, 5, 10, 11, 8, 10, 20, 22});
  CHECK(values(matmul(batch, stack({b, b}, 0))) == std::vector<float>{4, 5, 10, 11, 8, 10, 20, 22});
  CHECK_THROWS_WITH_AS(matmul(zeros({32, 784}), zeros({512, 256})),
                       "matmul: [32, 784] @ [512, 256]: inner sizes differ (784 vs 512)", Error);
  CHECK_THROWS_WITH_AS(matmul(zeros({2, 3, 4}), zeros({3, 4, 5})),
                       "matmul: [2, 3, 4] @ [3, 4, 5]: batch sizes differ (2 vs 3)", Error);
  CHECK_THROWS_WITH_AS(matmul(zeros({3}), zeros({3, 4})),
                       "matmul: [3] @ [3, 4]: supports 2-D @ 2-D, 3-D @ 3-D and 3-D @ 2-D", Error);
}

TEST_CASE("mix: each row's weighted sum of its n values, worked out by hand") {
  // Row 0: 2 * [1, 2] - 1 * [3, 4] = [-1, 0]; row 1: 0.5 * [5, 6] + 0 * [7, 8] = [2.5, 3].
  const Tensor w = tensor({2, -1, 0.5, 0}, {2, 2});
  const Tensor x = tensor({1, 2, 3, 4, 5, 6, 7, 8}, {2, 2, 2});
  CHECK(values(mix(w, x)) == std::vector<float>{-1, 0, 2.5, 3});
  // Gate 1 of [batch, gates, n] weights [[9, 9], [2, -1]] and [[9, 9], [0.5, 0]], read at its stride.
  const Tensor gates = tensor({9, 9, 2, -1, 9, 9, 0.5, 0}, {2, 2, 2});
  CHECK(values(mix(gates.narrow(1, 1, 1).squeeze(1), x)) == std::vector<float>{-1, 0, 2.5, 3});
  // Backward by hand with upstream ones: dw[b, e] = sum_j x[b, e, j], dx[b, e, j] = w[b, e].
  const Tensor wg = w.clone().requires_grad_(), xg = x.clone().requires_grad_();
  sum(mix(wg, xg)).backward();
  CHECK(values(wg.grad()) == std::vector<float>{3, 7, 11, 15});
  CHECK(values(xg.grad()) == std::vector<float>{2, 2, -1, -1, 0.5, 0.5, 0, 0});
  CHECK_THROWS_WITH_AS(
      mix(zeros({2, 3}), zeros({2, 4, 5})),
      "mix: weights [2, 3] and values [2, 4, 5]: expects weights [batch, n] and values [batch, n, width]", Error);
}

TEST_CASE("matmul of a large product split across threads matches OpenBLAS in one call") {
  Generator gen(3);
  const Tensor a = randn({300, 200}, gen), b = randn({200, 150}, gen);
  const Tensor c = matmul(a, b);
  const std::vector<float> va = values(a), vb = values(b), vc = values(c);
  double worst = 0;
  for (int i = 0; i < 300; i += 37)
    for (int j = 0; j < 150; j += 11) {
      double ref = 0;
      for (int k = 0; k < 200; ++k) ref += static_cast<double>(va[i * 200 + k]) * vb[k * 150 + j];
      worst = std::max(worst, std::fabs(ref - vc[i * 150 + j]));
    }
  CHECK(worst < 1e-3);
}

TEST_CASE("softmax and log_softmax") {
  const Tensor x = tensor({1, 2, 3, 1000, 1000, 1000}, {2, 3});
  const double e1 = std::exp(1.0), e2 = std::exp(2.0), e3 = std::exp(3.0), z = e1 + e2 + e3;
  check_close(softmax(x, 1), {float(e1 / z), float(e2 / z), float(e3 / z), 1 / 3.0f, 1 / 3.0f, 1 / 3.0f});
  check_close(log_softmax(x, 1), {float(1 - std::log(z)), float(2 - std::log(z)), float(3 - std::log(z)),
                                  float(-std::log(3.0)), float(-std::log(3.0)), float(-std::log(3.0))});
  check_close(softmax(tensor({0, 0, 0, std::log(3.0f)}, {2, 2}), 0), {0.5f, 0.25f, 0.5f, 0.75f});
}

TEST_CASE("softmax and log_softmax of many short rows (computed in blocks of rows) against double") {
  // 150 rows of 4 (an MMoE gate's logits): three blocks of rows, the last one ragged.
  Generator gen(5);
  const Tensor x = randn({150, 4}, gen) * 5.0;
  const std::vector<float> v = values(x), p = values(softmax(x, 1)), lp = values(log_softmax(x, 1));
  for (std::size_t r = 0; r < 150; ++r) {
    double top = -INFINITY, z = 0;
    for (std::size_t i = 0; i < 4; ++i) top = std::max<double>(top, v[r * 4 + i]);
    for (std::size_t i = 0; i < 4; ++i) z += std::exp(v[r * 4 + i] - top);
    for (std::size_t i = 0; i < 4; ++i) {
      CHECK(p[r * 4 + i] == doctest::Approx(std::exp(v[r * 4 + i] - top) / z).epsilon(1e-6));
      CHECK(lp[r * 4 + i] == doctest::Approx(v[r * 4 + i] - top - std::log(z)).epsilon(1e-6));
    }
  }
}

TEST_CASE("softmax_cross_entropy: -log softmax at the target, gradient softmax - onehot, bad targets") {
  const Tensor x = tensor({1, 2, 3, 1000, 1000, 1000}, {2, 3}).requires_grad_();
  const double z = std::exp(1.0) + std::exp(2.0) + std::exp(3.0);
  const Tensor loss = softmax_cross_entropy(x, tensor(std::vector<std::int64_t>{2, 0}, {2}));
  check_close(loss, {float(std::log(z) - 3), float(std::log(3.0))});
  sum(loss * tensor({1, 2})).backward();
  check_close(x.grad(), {float(std::exp(1.0) / z), float(std::exp(2.0) / z), float(std::exp(3.0) / z - 1),
                         2 * (1 / 3.0f - 1), 2 / 3.0f, 2 / 3.0f});
  CHECK_THROWS_WITH(softmax_cross_entropy(x, tensor(std::vector<std::int64_t>{2, 3}, {2})),
                    doctest::Contains("softmax_cross_entropy: target[1] = 3 is out of range for 3 classes"));
  CHECK_THROWS_WITH(softmax_cross_entropy(x, tensor(std::vector<std::int64_t>{2}, {1})), doctest::Contains("batch sizes differ"));
}

TEST_CASE("batch_norm: statistics, normalised values and gradients worked out by hand; bad shapes") {
  // [N = 3, C = 2]: channel 0 is {0, 3, 6} (mean 3, var 6), channel 1 is {1, 1, 4} (mean 2, var 2).
  const Tensor x = tensor({0, 1, 3, 1, 6, 4}, {3, 2}).requires_grad_();
  const Tensor w = tensor({2, -1}).requires_grad_(), b = tensor({0.5f, 0}).requires_grad_();
  const BatchNormOutput out = batch_norm(x, w, b, 1e-5);
  check_close(out.mean, {3, 2});
  check_close(out.var, {6, 2});
  const float r6 = std::sqrt(6.0f), r2 = std::sqrt(2.0f);
  check_close(out.y, {0.5f - 2 * 3 / r6, 1 / r2, 0.5f, 1 / r2, 0.5f + 2 * 3 / r6, -2 / r2}, 1e-4);
  // d/dy = 1 at y[0, 1] only: dbias = {0, 1}, dweight = {0, xhat[0, 1]} = {0, -1/sqrt 2}, and
  // dx[:, 1] = w * inv_std * (dy - mean(dy) - xhat * mean(dy * xhat)) = {-1, 1, 0} / (2 sqrt 2).
  sum(out.y * tensor({0, 1, 0, 0, 0, 0}, {3, 2})).backward();
  check_close(b.grad(), {0, 1}, 1e-5);
  check_close(w.grad(), {0, -1 / r2}, 1e-4);
  check_close(x.grad(), {0, -0.5f / r2, 0, 0.5f / r2, 0, 0}, 1e-4);

  CHECK_THROWS_WITH_AS(batch_norm(x, tensor({1, 1, 1}), tensor({0, 0, 0}), 1e-5),
                       "batch_norm: weight [3] and bias [3] must be [2] for input [3, 2]", Error);
  CHECK_THROWS_WITH_AS(batch_norm(x, w, Tensor(), 1e-5),
                       "batch_norm: weight and bias must both be given or both be undefined", Error);
  CHECK_THROWS_WITH_AS(batch_norm(tensor({1, 2, 3}), {}, {}, 1e-5),
                       "batch_norm: expected an [N, C, ...] input, got [3]", Error);
  CHECK_THROWS_WITH_AS(batch_norm(zeros({0, 2}), {}, {}, 1e-5), "batch_norm: input [0, 2] has no values per channel",
                       Error);
}

TEST_CASE("layer_norm: normalised values and gradients worked out by hand; bad shapes") {
  // Row 0 is {1, 2, 3, 4}: mean 2.5, var 1.25, xhat = {-3, -1, 1, 3} / sqrt 5. Row 1 is {0, 0, 2, 2}:
  // mean 1, var 1, xhat = {-1, -1, 1, 1}.
  const Tensor x = tensor({1, 2, 3, 4, 0, 0, 2, 2}, {2, 4}).requires_grad_();
  const Tensor w = tensor({1, 2, 1, 2}).requires_grad_(), b = tensor({0, 0, 1, 1}).requires_grad_();
  const Tensor y = layer_norm(x, {4}, w, b, 1e-6);
  const float r5 = std::sqrt(5.0f);
  check_close(y, {-3 / r5, -2 / r5, 1 + 1 / r5, 1 + 6 / r5, -1, -2, 2, 3}, 1e-4);
  // d/dy = 1 at y[0, 0] only: dbias = {1, 0, 0, 0}, dweight = {xhat[0, 0], 0, 0, 0}, and with
  // g = dy * w = {1, 0, 0, 0}: dx[0] = rstd * (g - mean(g) - xhat * mean(g * xhat))
  // = (sqrt 5 / 2.5) * ({0.75, -0.25, -0.25, -0.25} - xhat * (-3 / (4 sqrt 5)))
  // = {0.6, -0.8, -0.2, 0.4} / sqrt 5; row 1 gets nothing.
  sum(y * tensor({1, 0, 0, 0, 0, 0, 0, 0}, {2, 4})).backward();
  check_close(b.grad(), {1, 0, 0, 0}, 1e-5);
  check_close(w.grad(), {-3 / r5, 0, 0, 0}, 1e-4);
  check_close(x.grad(), {0.6f / r5, -0.8f / r5, -0.2f / r5, 0.4f / r5, 0, 0, 0, 0}, 1e-4);

  CHECK_THROWS_WITH_AS(layer_norm(x, {3}, Tensor(), Tensor(), 1e-5),
                       "layer_norm: input [2, 4] does not end in normalized_shape [3]", Error);
  CHECK_THROWS_WITH_AS(layer_norm(x, {4}, tensor({1, 1}), tensor({0, 0}), 1e-5),
                       "layer_norm: weight [2] and bias [2] must be normalized_shape [4]", Error);
  CHECK_THROWS_WITH_AS(layer_norm(x, {4}, w, Tensor(), 1e-5),
                       "layer_norm: weight and bias must both be given or both be undefined", Error);
  CHECK_THROWS_WITH_AS(layer_norm(x, {4}, Tensor(), Tensor(), 0.0), "layer_norm: eps must be positive, got 0", Error);
}

TEST_CASE("linear: bias and ReLU fused into the GEMM, gradients worked out by hand, shape errors") {
  const Tensor x = tensor({1, -2, 0.5, 1}, {2, 2}).requires_grad_();
  const Tensor w = tensor({1, 0.5, -1, 1, 0.3, -0.9}, {3, 2}).requires_grad_();
  const Tensor b = tensor({0.3, -0.4, 0.2}).requires_grad_();
  // x wᵀ + b = [[0.3, -3.4, 2.3], [1.3, 0.1, -0.55]]
  check_close(linear(x, w, b), {0.3f, -3.4f, 2.3f, 1.3f, 0.1f, -0.55f});
  const Tensor y = linear(x, w, b, Activation::relu);
  check_close(y, {0.3f, 0, 2.3f, 1.3f, 0.1f, 0});
  sum(y).backward();  // dy = the ReLU mask [[1, 0, 1], [1, 1, 0]]
  check_close(x.grad(), {1.3f, -0.4f, 0, 1.5f});               // dy w
  check_close(w.grad(), {1.5f, -1, 0.5f, 1, 1, -2});          // dyᵀ x
  check_close(b.grad(), {2, 1, 1});                            // column sums of dy
  CHECK_THROWS_WITH(linear(x, w.t(), b), doctest::Contains("linear: input [2, 2] and weight [2, 3]"));
  CHECK_THROWS_WITH(linear(x, w, tensor({1, 2})), doctest::Contains("linear: bias [2] must be [3]"));
}

TEST_CASE("cat, stack, split") {
  const Tensor a = tensor({1, 2, 3, 4}, {2, 2}), b = tensor({5, 6}, {2, 1});
  CHECK(values(cat({a, b}, 1)) == std::vector<float>{1, 2, 5, 3, 4, 6});
  CHECK(values(cat({a, a}, 0)) == std::vector<float>{1, 2, 3, 4, 1, 2, 3, 4});
  CHECK(stack({a, a}, 1).shape() == Shape{2, 2, 2});
  CHECK(values(stack({a, a}, 1)) == std::vector<float>{1, 2, 1, 2, 3, 4, 3, 4});
  const auto parts = split(arange(0.0, 5.0), 2, 0);
  REQUIRE(parts.size() == 3);
  CHECK(values(parts[2]) == std::vector<float>{4});
  CHECK(cat({arange(2), arange(3)}, 0).to_vector<std::int64_t>() == std::vector<std::int64_t>{0, 1, 0, 1, 2});
  CHECK_THROWS_WITH_AS(cat({a, b}, 0), "cat: tensor 1 has shape [2, 1], tensor 0 has [2, 2]; they must match except in dim 0",
                       Error);
}

TEST_CASE("indexing") {
  const Tensor x = tensor({1, 2, 3, 4, 5, 6}, {3, 2});
  CHECK(values(index_select(x, 0, tensor(std::vector<std::int64_t>{2, 0}, {2}))) == std::vector<float>{5, 6, 1, 2});
  CHECK(values(index_select(x, 1, tensor(std::vector<std::int64_t>{1}, {1}))) == std::vector<float>{2, 4, 6});
  CHECK(values(gather(x, 1, tensor(std::vector<std::int64_t>{1, 0, 0}, {3, 1}))) == std::vector<float>{2, 3, 5});
  CHECK_THROWS_WITH_AS(index_select(x, 0, tensor(std::vector<std::int64_t>{3}, {1})),
                       "index_select: index 3 is out of range for dim 0 of size 3 in [3, 2]", Error);
  CHECK_THROWS_WITH_AS(gather(x, 1, tensor(std::vector<std::int64_t>{-1, 0, 0}, {3, 1})),
                       "gather: index -1 is out of range for dim 1 of size 2 in [3, 2]", Error);
  CHECK_THROWS_WITH_AS(gather(x, 1, tensor({0, 1, 0}, {3, 1})),
                       "gather: index must be int64, got float32 of shape [3, 1]", Error);
  CHECK(values(where(tensor({1, 0, 1}), tensor({1, 2, 3}), scalar(-1))) == std::vector<float>{1, -1, 3});
}

TEST_CASE("comparisons and equality") {
  const Tensor a = tensor({1, 2, 3}), b = tensor({3, 2, 1});
  CHECK(values(eq(a, b)) == std::vector<float>{0, 1, 0});
  CHECK(values(lt(a, b)) == std::vector<float>{1, 0, 0});
  CHECK(values(ge(a, b)) == std::vector<float>{0, 1, 1});
  const Tensor labels = tensor(std::vector<std::int64_t>{1, 2, 3}, {3});
  CHECK(values(eq(labels, tensor(std::vector<std::int64_t>{1, 0, 3}, {3}))) == std::vector<float>{1, 0, 1});
  CHECK_THROWS_WITH_AS(eq(a, labels), "eq: operands have different dtypes: float32 [3] vs int64 [3]", Error);
  CHECK(equal(a, tensor({1, 2, 3})));
  CHECK_FALSE(equal(a, b));
  CHECK(allclose(a, a + 1e-7));
}

TEST_CASE("embedding_bag sums or averages each bag given by offsets; bad input") {
  const auto idx = [](std::vector<std::int64_t> v, Shape shape) { return tensor(std::move(v), std::move(shape)); };
  const Tensor w = tensor({0, 0, 1, 2, 3, 4, 5, 6}, {4, 2}).requires_grad_();  // rows [0, 0], [1, 2], [3, 4], [5, 6]
  // Bags {1, 2}, {}, {3, 0, 2}.
  const Tensor i = idx({1, 2, 3, 0, 2}, {5});
  const Tensor o = idx({0, 2, 2}, {3});
  CHECK(values(embedding_bag(w, i, o, BagMode::sum)) == std::vector<float>{4, 6, 0, 0, 8, 10});
  const std::vector<float> m = values(embedding_bag(w, i, o, BagMode::mean));
  CHECK(m[0] == 2.0f);
  CHECK(m[1] == 3.0f);
  CHECK(m[2] == 0.0f);
  CHECK(m[3] == 0.0f);
  CHECK(m[4] == doctest::Approx(8.0 / 3).epsilon(1e-6));
  CHECK(m[5] == doctest::Approx(10.0 / 3).epsilon(1e-6));

  // Mean gradient: each row gets 1 / (its bag's size) per occurrence.
  sum(embedding_bag(w, i, o, BagMode::mean)).backward();
  const std::vector<float> g = values(w.grad());
  const std::vector<double> expected{1.0 / 3, 1.0 / 3, 0.5, 0.5, 0.5 + 1.0 / 3, 0.5 + 1.0 / 3, 1.0 / 3, 1.0 / 3};
  for (std::size_t k = 0; k < g.size(); ++k) CHECK(g[k] == doctest::Approx(expected[k]).epsilon(1e-6));

  // padding_idx 0 is skipped and not counted: bag 2 becomes {3, 2} -> [4, 5].
  w.zero_grad();
  const Tensor p = embedding_bag(w, i, o, BagMode::mean, 0);
  CHECK(values(p) == std::vector<float>{2, 3, 0, 0, 4, 5});
  sum(p).backward();
  CHECK(values(w.grad()) == std::vector<float>{0, 0, 0.5f, 0.5f, 1, 1, 0.5f, 0.5f});

  // 2-D indices: one bag per row.
  CHECK(values(embedding_bag(w, idx({1, 2, 3, 0}, {2, 2}), Tensor(), BagMode::sum)) ==
        std::vector<float>{4, 6, 5, 6});

  // padding_idx counts from the end like an index; bad input names the op.
  CHECK(values(embedding_bag(w, i, o, BagMode::sum, -4)) == values(embedding_bag(w, i, o, BagMode::sum, 0)));
  CHECK_THROWS_WITH_AS(embedding_bag(w, i, o, BagMode::sum, 4),
                       "embedding_bag: padding_idx 4 is out of range for 4 embeddings", Error);
  CHECK_THROWS_WITH_AS(embedding_bag(w, idx({1, 4}, {2}), idx({0}, {1})),
                       "embedding_bag: index 4 is out of range for 4 embeddings", Error);
  CHECK_THROWS_WITH_AS(embedding_bag(w, tensor({1.0f}), idx({0}, {1})),
                       "embedding_bag: indices must be int64, got float32", Error);
  CHECK_THROWS_WITH_AS(embedding_bag(tensor({1.0f}), idx({0}, {1}), idx({0}, {1})),
                       "embedding_bag: weight must be a 2-D float32 tensor, got [1]", Error);
  CHECK_THROWS_WITH_AS(embedding_bag(w, idx({1, 2}, {1, 2}), idx({0}, {1})),
                       "embedding_bag: offsets must be omitted for 2-D indices [1, 2]", Error);
}

TEST_CASE("normal_cdf: values from the standard normal table, gradient the density") {
  const Tensor x = tensor({0.0f, 1.0f, -1.96f, 3.0f}).requires_grad_();
  const Tensor y = normal_cdf(x);
  check_close(y, {0.5f, 0.8413447f, 0.0249979f, 0.9986501f}, 1e-6);
  sum(y).backward();
  // phi(x) = exp(-x^2 / 2) / sqrt(2 pi)
  check_close(x.grad(), {0.3989423f, 0.2419707f, 0.0584409f, 0.0044318f}, 1e-5);
  CHECK(normal_cdf(tensor({-40.0f})).item() == 0.0f);  // the tail underflows to 0, not NaN
  CHECK_THROWS_WITH_AS(normal_cdf(arange(3)), "normal_cdf: expected a float32 tensor, got int64 of shape [3]", Error);
}
