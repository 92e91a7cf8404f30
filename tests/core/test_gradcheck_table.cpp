// Every differentiable op, gradient-checked against central differences from one table. Adding an
// op means adding a row here. Inputs include broadcasting and non-contiguous (transposed, narrowed,
// expanded) views; kinked ops get inputs kept away from their kinks.
#include <doctest/doctest.h>

#include <functional>
#include <string>

#include "../kernels/for_each_isa.h"
#include "ladon.h"

using namespace ladon;

namespace {

Generator& table_gen() {
  static Generator gen(42);
  return gen;
}
Tensor rnd(const Shape& shape) { return randn(shape, table_gen()); }
Tensor pos(const Shape& shape) { return uniform(shape, 0.5, 2.0, table_gen()); }
// Values at least 0.2 away from zero, for relu/abs/max-style kinks.
Tensor away(const Shape& shape) {
  Tensor t = uniform(shape, 0.2, 1.5, table_gen());
  float* p = t.data<float>();
  for (std::int64_t i = 0; i < t.numel(); ++i)
    if (i % 2) p[i] = -p[i];
  return t;
}
// Distinct values so max/maximum have no ties.
Tensor distinct(const Shape& shape) {
  Tensor t = randperm(shape_numel(shape), table_gen());
  std::vector<float> v;
  for (std::int64_t x : t.to_vector<std::int64_t>()) v.push_back(0.3f * static_cast<float>(x) - 1.0f);
  return tensor(v, shape);
}
Tensor idx(std::vector<std::int64_t> v, Shape shape) { return tensor(std::move(v), std::move(shape)); }

struct Case {
  std::string name;
  std::function<Tensor(const std::vector<Tensor>&)> f;
  std::vector<Tensor> inputs;
};

using In = const std::vector<Tensor>&;

std::vector<Case> table() {
  return {
      {"add", [](In x) { return add(x[0], x[1]); }, {rnd({3, 4}), rnd({3, 4})}},
      {"add broadcast", [](In x) { return add(x[0], x[1]); }, {rnd({3, 4}), rnd({4})}},
      {"add broadcast both", [](In x) { return add(x[0], x[1]); }, {rnd({3, 1}), rnd({1, 4})}},
      {"add transposed", [](In x) { return add(x[0].t(), x[1]); }, {rnd({4, 3}), rnd({3, 4})}},
      {"sub", [](In x) { return sub(x[0], x[1]); }, {rnd({2, 3}), rnd({2, 1})}},
      {"mul", [](In x) { return mul(x[0], x[1]); }, {rnd({2, 3}), rnd({3})}},
      {"mul scalar", [](In x) { return x[0] * 3.0; }, {rnd({5})}},
      {"div", [](In x) { return div(x[0], x[1]); }, {rnd({2, 3}), pos({2, 3})}},
      {"div broadcast", [](In x) { return div(x[0], x[1]); }, {rnd({2, 3}), pos({2, 1})}},
      {"pow", [](In x) { return pow(x[0], x[1]); }, {pos({2, 3}), rnd({2, 3})}},
      {"pow scalar", [](In x) { return pow(x[0], 3.0); }, {rnd({4})}},
      // Zero bases: d/d(exponent) there is 0 (0^b stays 0), and so is d/d(base) of 0^0 and of x^0.
      {"pow zero base", [](In x) { return pow(x[0], x[1]); },
       {tensor({0.0f, 0.0f, 0.0f, 1.5f}), tensor({2.0f, 3.0f, 1.0f, -0.5f})}},
      {"pow zero exponent at zero", [](In x) { return pow(x[0], 0.0); }, {tensor({0.0f, 0.7f, -1.2f})}},
      {"maximum", [](In x) { return maximum(x[0], x[1]); }, {distinct({2, 3}), distinct({2, 3}) * 0.9 + 0.05}},
      {"minimum", [](In x) { return minimum(x[0], x[1]); }, {distinct({2, 3}), distinct({3}) * 0.7 + 0.05}},
      {"neg", [](In x) { return neg(x[0]); }, {rnd({3})}},
      {"exp", [](In x) { return exp(x[0]); }, {rnd({2, 3})}},
      {"log", [](In x) { return log(x[0]); }, {pos({2, 3})}},
      {"sqrt", [](In x) { return sqrt(x[0]); }, {pos({2, 3})}},
      {"abs", [](In x) { return abs(x[0]); }, {away({2, 3})}},
      {"relu", [](In x) { return relu(x[0]); }, {away({2, 3})}},
      {"sigmoid", [](In x) { return sigmoid(x[0]); }, {rnd({2, 3})}},
      {"tanh", [](In x) { return tanh(x[0]); }, {rnd({2, 3})}},
      {"gelu", [](In x) { return gelu(x[0]); }, {rnd({2, 3})}},
      {"gelu tanh", [](In x) { return gelu(x[0], Gelu::tanh); }, {rnd({2, 3})}},
      {"normal_cdf non-contiguous", [](In x) { return normal_cdf(x[0].t()); }, {rnd({2, 3})}},
      {"clamp", [](In x) { return clamp(x[0], -0.5, 0.5); }, {tensor({-1.0f, -0.3f, 0.1f, 0.4f, 0.9f})}},
      {"sum all", [](In x) { return sum(x[0]); }, {rnd({2, 3})}},
      {"sum dim", [](In x) { return sum(x[0], {1}); }, {rnd({2, 3, 4})}},
      {"sum dims keepdim", [](In x) { return sum(x[0], {0, 2}, true); }, {rnd({2, 3, 4})}},
      {"sum transposed", [](In x) { return sum(x[0].t(), {1}); }, {rnd({3, 4})}},
      {"mean", [](In x) { return mean(x[0], {0}); }, {rnd({3, 2})}},
      {"mean all", [](In x) { return mean(x[0]); }, {rnd({3, 2})}},
      {"max all", [](In x) { return max(x[0]); }, {distinct({3, 4})}},
      {"max all tied", [](In x) { return max(x[0]); }, {tensor({0.5f, 2.0f, -1.0f, 2.0f}, {2, 2})}},
      {"max dim", [](In x) { return max(x[0], 1).values; }, {distinct({3, 4})}},
      {"max dim keepdim", [](In x) { return max(x[0], 0, true).values; }, {distinct({3, 4})}},
      {"matmul", [](In x) { return matmul(x[0], x[1]); }, {rnd({3, 4}), rnd({4, 2})}},
      {"matmul transposed", [](In x) { return matmul(x[0].t(), x[1].t()); }, {rnd({4, 3}), rnd({2, 4})}},
      {"matmul batched", [](In x) { return matmul(x[0], x[1]); }, {rnd({2, 3, 4}), rnd({2, 4, 5})}},
      {"matmul batched transposed", [](In x) { return matmul(x[0], x[1].transpose(1, 2)); },
       {rnd({2, 3, 4}), rnd({2, 5, 4})}},
      {"linear", [](In x) { return linear(x[0], x[1], x[2]); }, {rnd({3, 4}), rnd({2, 4}), rnd({2})}},
      {"linear no bias, transposed input", [](In x) { return linear(x[0].t(), x[1], Tensor()); },
       {rnd({4, 3}), rnd({2, 4})}},
      // Pre-activations 0.3 -3.4 2.3 / 1.3 0.1 -0.55: both sides of the ReLU, none near its kink.
      {"linear relu",
       [](In x) { return linear(x[0], x[1], x[2], Activation::relu); },
       {tensor({1, -2, 0.5, 1}, {2, 2}), tensor({1, 0.5, -1, 1, 0.3, -0.9}, {3, 2}), tensor({0.3, -0.4, 0.2})}},
      // An [in, out] weight passed transposed (ExpertBank's first layer): dW is made in its layout.
      {"linear relu, transposed weight",
       [](In x) { return linear(x[0], x[1].t(), x[2], Activation::relu); },
       {tensor({1, -2, 0.5, 1}, {2, 2}), tensor({1, -1, 0.3, 0.5, 1, -0.9}, {2, 3}), tensor({0.3, -0.4, 0.2})}},
      {"mix", [](In x) { return mix(x[0], x[1]); }, {rnd({3, 2}), rnd({3, 2, 5})}},
      // One gate's column of [batch, gates, n] weights (read in place), values transposed (copied).
      {"mix strided", [](In x) { return mix(x[0].narrow(1, 1, 1).squeeze(1), x[1].transpose(1, 2)); },
       {rnd({3, 2, 4}), rnd({3, 17, 4})}},
      {"matmul 3d by 2d", [](In x) { return matmul(x[0], x[1]); }, {rnd({2, 3, 4}), rnd({4, 2})}},
      {"softmax", [](In x) { return softmax(x[0], 1); }, {rnd({3, 4})}},
      {"softmax dim 0", [](In x) { return softmax(x[0], 0); }, {rnd({3, 4})}},
      // The fused backward along the last dim, over rows of a transposed 3-D input.
      {"softmax 3-D last dim", [](In x) { return softmax(x[0].transpose(0, 1), -1); }, {rnd({3, 2, 5})}},
      {"log_softmax", [](In x) { return log_softmax(x[0], -1); }, {rnd({3, 4})}},
      {"softmax_cross_entropy", [](In x) { return softmax_cross_entropy(x[0], idx({2, 0, 3}, {3})); }, {rnd({3, 4})}},
      {"softmax_cross_entropy non-contiguous", [](In x) { return softmax_cross_entropy(x[0].t(), idx({1, 0}, {2})); },
       {rnd({3, 2})}},
      {"cat", [](In x) { return cat({x[0], x[1]}, 1); }, {rnd({2, 3}), rnd({2, 2})}},
      {"stack", [](In x) { return stack({x[0], x[1]}, 0); }, {rnd({2, 3}), rnd({2, 3})}},
      {"split", [](In x) { return split(x[0], 2, 1)[1] * 2.0; }, {rnd({2, 5})}},
      {"index_select", [](In x) { return index_select(x[0], 0, idx({2, 0, 2}, {3})); }, {rnd({3, 4})}},
      {"index_select dim 1", [](In x) { return index_select(x[0], 1, idx({1, 1}, {2})); }, {rnd({3, 4})}},
      {"index_add", [](In x) { return index_add(x[0], 0, idx({2, 0, 2}, {3}), x[1]); }, {rnd({3, 4}), rnd({3, 4})}},
      {"index_add dim 1 broadcast", [](In x) { return index_add(x[0].expand({3, 4}), 1, idx({1, 1}, {2}), x[1].t()); },
       {rnd({1, 4}), rnd({2, 3})}},
      {"gather", [](In x) { return gather(x[0], 1, idx({0, 2, 1, 1}, {2, 2})); }, {rnd({2, 3})}},
      {"embedding_bag sum, padding",
       [](In x) { return embedding_bag(x[0], idx({1, 2, 1, 0, 2, 3}, {6}), idx({0, 3, 3, 5}, {4}), BagMode::sum, 3); },
       {rnd({4, 3})}},
      {"embedding_bag mean 2-D", [](In x) { return embedding_bag(x[0].t(), idx({1, 2, 2, 0, 3, 3}, {3, 2})); },
       {rnd({3, 4})}},
      {"embedding_bag sparse (row-sparse gradient)",
       [](In x) { return embedding_bag(x[0], idx({3, 0, 3, 1}, {4}), idx({0, 1}, {2}), BagMode::sum, 0, true); },
       {rnd({4, 3})}},
      {"where", [](In x) { return where(tensor({1.0f, 0.0f, 1.0f}), x[0], x[1]); }, {rnd({2, 3}), rnd({3})}},
      {"reshape", [](In x) { return x[0].reshape({3, 2}) * x[1]; }, {rnd({2, 3}), rnd({3, 2})}},
      {"reshape non-contiguous", [](In x) { return x[0].t().reshape({-1}); }, {rnd({2, 3})}},
      {"permute", [](In x) { return x[0].permute({2, 0, 1}); }, {rnd({2, 3, 4})}},
      {"narrow", [](In x) { return x[0].narrow(1, 1, 2); }, {rnd({3, 4})}},
      {"expand", [](In x) { return x[0].expand({3, 4}) * x[1]; }, {rnd({1, 4}), rnd({3, 4})}},
      {"squeeze unsqueeze", [](In x) { return x[0].unsqueeze(0).squeeze(0).unsqueeze(2); }, {rnd({2, 3})}},
      {"flatten", [](In x) { return x[0].flatten(1); }, {rnd({2, 3, 2})}},
      {"contiguous", [](In x) { return x[0].t().contiguous(); }, {rnd({2, 3})}},
      {"chain", [](In x) { return sum(tanh(matmul(x[0], x[1])) * x[0].narrow(1, 0, 2), {1}); },
       {rnd({3, 4}), rnd({4, 2})}},
      // Convolution and pooling.
      {"conv2d", [](In x) { return conv2d(x[0], x[1], x[2]); }, {rnd({2, 2, 4, 4}), rnd({3, 2, 3, 3}), rnd({3})}},
      {"conv2d stride padding", [](In x) { return conv2d(x[0], x[1], x[2], {.stride = 2, .padding = 1}); },
       {rnd({1, 2, 5, 5}), rnd({2, 2, 3, 3}), rnd({2})}},
      {"conv2d dilation", [](In x) { return conv2d(x[0], x[1], Tensor(), {.padding = {1, 2}, .dilation = 2}); },
       {rnd({1, 1, 6, 7}), rnd({2, 1, 2, 3})}},
      {"conv2d groups", [](In x) { return conv2d(x[0], x[1], x[2], {.stride = {1, 2}, .padding = 1, .groups = 2}); },
       {rnd({2, 4, 4, 4}), rnd({4, 2, 3, 3}), rnd({4})}},
      {"conv2d pointwise", [](In x) { return conv2d(x[0], x[1]); }, {rnd({2, 3, 3, 3}), rnd({2, 3, 1, 1})}},
      // Biases of +-8 keep every output far from the ReLU's kink (each channel passes or blocks): with
      // random biases, which inputs a finite difference straddles the kink at depends on the draws.
      {"conv2d relu", [](In x) { return conv2d(x[0], x[1], x[2] * 8.0, {.padding = 1}, Activation::relu); },
       {rnd({2, 2, 4, 4}), rnd({3, 2, 3, 3}), tensor({1.0f, -1.0f, 1.0f})}},
      {"conv2d relu groups stride",
       [](In x) { return conv2d(x[0], x[1], x[2] * 8.0, {.stride = 2, .groups = 2}, Activation::relu); },
       {rnd({2, 4, 5, 5}), rnd({4, 2, 3, 3}), tensor({1.0f, -1.0f, -1.0f, 1.0f})}},
      {"conv2d non-contiguous unbatched", [](In x) { return conv2d(x[0].permute({2, 0, 1}), x[1], x[2]); },
       {rnd({4, 3, 2}), rnd({2, 2, 2, 2}), rnd({2})}},
      // The fused conv + (ReLU) + 2x2 pool: its direct path on AVX-512 CPUs (stride 1, padding 1).
      {"conv2d_max_pool2x2 relu",
       [](In x) { return conv2d_max_pool2x2(x[0], x[1], x[2] * 8.0, {.padding = 1}, Activation::relu); },
       {rnd({2, 2, 4, 5}), rnd({3, 2, 3, 3}), tensor({1.0f, -1.0f, 1.0f})}},
      {"conv2d_max_pool2x2", [](In x) { return conv2d_max_pool2x2(x[0], x[1], x[2], {.padding = 1}); },
       {rnd({1, 2, 5, 4}), rnd({2, 2, 3, 3}), rnd({2})}},
      {"max_pool2d", [](In x) { return max_pool2d(x[0], 2); }, {distinct({2, 2, 4, 4})}},
      {"max_pool2d stride padding", [](In x) { return max_pool2d(x[0], 3, {.stride = 2, .padding = 1}); },
       {distinct({1, 2, 5, 5})}},
      {"max_pool2d dilation", [](In x) { return max_pool2d(x[0], {2, 3}, {.stride = 1, .dilation = 2}); },
       {distinct({1, 1, 5, 6})}},
      {"avg_pool2d", [](In x) { return avg_pool2d(x[0], 2); }, {rnd({2, 2, 4, 4})}},
      {"avg_pool2d padding", [](In x) { return avg_pool2d(x[0], 3, {.stride = 2, .padding = 1}); }, {rnd({1, 2, 5, 5})}},
      {"avg_pool2d padding excluded",
       [](In x) { return avg_pool2d(x[0], {3, 2}, {.stride = {2, 1}, .padding = 1, .count_include_pad = false}); },
       {rnd({1, 2, 5, 4})}},
      {"batch_norm", [](In x) { return batch_norm(x[0], x[1], x[2], 1e-5).y; },
       {rnd({3, 2, 2, 3}), pos({2}), rnd({2})}},
      {"batch_norm no affine, non-contiguous", [](In x) { return batch_norm(x[0].transpose(0, 1), {}, {}, 0.1).y; },
       {rnd({4, 3, 5})}},
      {"batch_norm 2-D", [](In x) { return batch_norm(x[0], x[1], x[2], 1e-3).y; }, {rnd({5, 3}), rnd({3}), rnd({3})}},
      {"layer_norm", [](In x) { return layer_norm(x[0], {5}, x[1], x[2], 1e-5); }, {rnd({3, 5}), rnd({5}), rnd({5})}},
      {"layer_norm two dims, no affine, non-contiguous",
       [](In x) { return layer_norm(x[0].transpose(0, 2), {3, 2}, Tensor(), Tensor(), 0.1); }, {rnd({2, 3, 4})}},
      {"adaptive_avg_pool2d", [](In x) { return adaptive_avg_pool2d(x[0], {2, 3}); }, {rnd({1, 2, 5, 7})}},
      {"adaptive_avg_pool2d global", [](In x) { return adaptive_avg_pool2d(x[0].transpose(2, 3), 1); },
       {rnd({2, 3, 4, 3})}},
  };
}

}  // namespace

TEST_CASE("every differentiable op matches central finite differences, under every instruction set") {
  ladon::testing::for_each_isa([] {
    table_gen().seed_(42);  // the same inputs under every set
    for (const Case& c : table()) {
      CAPTURE(c.name);
      const GradcheckResult result = gradcheck(c.f, c.inputs);
      INFO(result.message);
      CHECK(result.ok);
    }
  });
}

TEST_CASE("gradcheck catches a wrong backward") {
  // x * detach(x): autograd sees only one factor (gradient x), the true derivative is 2x.
  const auto wrong = [](In x) { return mul(x[0], x[0].detach()); };
  CHECK_FALSE(gradcheck(wrong, {tensor({0.5f, 1.5f})}).ok);
}
