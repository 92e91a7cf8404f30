// Module bookkeeping (names, counts, train/eval, zero_grad) and Linear against hand-worked numbers.
#include <doctest/doctest.h>

#include <string>

#include "ladon.h"
#include "nn/activation.h"
#include "nn/dropout.h"
#include "nn/linear.h"
#include "nn/module.h"
#include "tests/helpers.h"

using namespace ladon;
using testing::values;

namespace {
struct Tower : nn::Module {
  nn::Sequential body{nn::Linear(3, 4), nn::ReLU(), nn::Linear(4, 2)};
  nn::Linear head{2, 1, {.bias = false}};
  void visit(Visitor& v) override {
    v("body", body);
    v("head", head);
  }
};

struct Net : nn::Module {
  Tower tower;
  nn::Linear extra{1, 1};
  Tensor scale = ones({1}).requires_grad_();
  void visit(Visitor& v) override {
    v("tower", tower);
    v("extra", extra);
    v("scale", scale);
  }
  Tensor forward(const Tensor& x) { return extra(tower.head(tower.body(x))) * scale; }
};
}  // namespace

TEST_CASE("named_parameters gives dotted names in visit order") {
  Net net;
  std::vector<std::string> names;
  std::vector<Shape> shapes;
  for (auto& [name, t] : net.named_parameters()) {
    names.push_back(name);
    shapes.push_back(t.shape());
  }
  CHECK(names == std::vector<std::string>{"tower.body.0.weight", "tower.body.0.bias", "tower.body.2.weight",
                                          "tower.body.2.bias", "tower.head.weight", "extra.weight", "extra.bias",
                                          "scale"});
  CHECK(shapes == std::vector<Shape>{{4, 3}, {4}, {2, 4}, {2}, {1, 2}, {1, 1}, {1}, {1}});
  // 12 + 4 + 8 + 2 + 2 + 1 + 1 + 1
  CHECK(net.num_parameters() == 31);
  // parameters() hands out the tensors the model holds, not copies.
  CHECK(net.parameters()[5].same(net.extra.weight));
  CHECK(net.parameters().size() == 8);
}

TEST_CASE("train and eval reach every submodule") {
  Net net;
  CHECK(net.is_training());
  net.eval();
  CHECK_FALSE(net.is_training());
  CHECK_FALSE(net.tower.is_training());
  CHECK_FALSE(net.tower.body.is_training());
  CHECK_FALSE(net.tower.body[1].is_training());
  CHECK_FALSE(net.tower.head.is_training());
  CHECK_FALSE(net.extra.is_training());
  net.tower.train();  // only that subtree
  CHECK_FALSE(net.is_training());
  CHECK(net.tower.body[2].is_training());
  CHECK_FALSE(net.extra.is_training());
  net.train();
  CHECK(net.extra.is_training());
}

TEST_CASE("a Dropout inside a Sequential follows eval()") {
  nn::Sequential seq{nn::Dropout(0.5, 3)};
  const Tensor x = ones({64});
  CHECK(sum(eq(seq(x), scalar(0.0))).item() > 0);  // training: some are dropped
  seq.eval();
  CHECK(equal(seq(x), x));
}

TEST_CASE("zero_grad drops every parameter's gradient") {
  Net net;
  sum(net.forward(ones({2, 3}))).backward();
  for (auto& [name, t] : net.named_parameters()) CHECK_MESSAGE(t.grad().defined(), name);
  net.zero_grad();
  for (auto& [name, t] : net.named_parameters()) CHECK_FALSE_MESSAGE(t.grad().defined(), name);
}

TEST_CASE("Linear forward with hand-set weights") {
  nn::Linear lin(3, 2);
  CHECK(lin.in_features() == 3);
  CHECK(lin.out_features() == 2);
  lin.weight = tensor({1, 2, 3, -1, 0, 1}, {2, 3}).requires_grad_();
  lin.bias = tensor({0.5f, -0.5f}).requires_grad_();
  // Row [1, 1, 1]:  [1 + 2 + 3 + 0.5, -1 + 0 + 1 - 0.5] = [6.5, -0.5]
  // Row [2, 0, -1]: [2 + 0 - 3 + 0.5, -2 + 0 - 1 - 0.5] = [-0.5, -3.5]
  const Tensor x = tensor({1, 1, 1, 2, 0, -1}, {2, 3});
  const Tensor y = lin(x);
  CHECK(y.shape() == Shape{2, 2});
  CHECK(values(y) == std::vector<float>{6.5f, -0.5f, -0.5f, -3.5f});
  // [batch, steps, in] applies the same map to every step.
  const Tensor y3 = lin(x.reshape({2, 1, 3}));
  CHECK(y3.shape() == Shape{2, 1, 2});
  CHECK(values(y3) == std::vector<float>{6.5f, -0.5f, -0.5f, -3.5f});
  // Gradients: dW = sum over the batch of g xᵀ with g = 1: column sums of x; db = batch size.
  sum(y).backward();
  CHECK(values(lin.weight.grad()) == std::vector<float>{3, 1, 0, 3, 1, 0});
  CHECK(values(lin.bias.grad()) == std::vector<float>{2, 2});

  nn::Linear no_bias(3, 2, {.bias = false});
  CHECK_FALSE(no_bias.bias.defined());
  CHECK(no_bias.parameters().size() == 1);
  no_bias.weight = tensor({1, 2, 3, -1, 0, 1}, {2, 3});
  CHECK(values(no_bias(x)) == std::vector<float>{6, 0, -1, -3});
}

TEST_CASE("Linear default init lies in U(-1/sqrt(in), 1/sqrt(in))") {
  Generator gen(5);
  nn::Linear lin(16, 8, {}, gen);  // bound 1/4
  const std::vector<float> w = values(lin.weight);
  float largest = 0;
  for (float v : w) largest = std::max(largest, std::abs(v));
  CHECK(largest <= 0.25f);
  CHECK(largest > 0.2f);  // 128 draws: P(all inside 0.8 of the range) = 0.8^128, negligible
  CHECK(lin.weight.requires_grad());
  CHECK(lin.bias.requires_grad());
}

TEST_CASE("Linear rejects a wrong input size with both shapes") {
  nn::Linear lin(3, 2);
  CHECK_THROWS_WITH_AS(lin(zeros({4, 5})), "Linear: input [4, 5] does not end in in_features=3 (weight [2, 3])",
                       Error);
  CHECK_THROWS_WITH_AS(nn::Linear(0, 2), "Linear: sizes must be positive, got in=0 out=2", Error);
}

TEST_CASE("Linear folds inputs of any rank into the batch") {
  ladon::nn::Linear layer(3, 2);
  std::fill(layer.weight.data<float>(), layer.weight.data<float>() + 6, 1.0f);  // each output = sum of inputs
  std::fill(layer.bias.data<float>(), layer.bias.data<float>() + 2, 0.5f);
  const ladon::Tensor one = layer(ladon::tensor({1, 2, 3}));
  CHECK(one.shape() == ladon::Shape{2});
  CHECK(one.to_vector<float>() == std::vector<float>{6.5f, 6.5f});
  CHECK(layer(ladon::ones({2, 2, 2, 3})).shape() == ladon::Shape{2, 2, 2, 2});
}

TEST_CASE("Sequential runs Linear + ReLU fused: same values and gradients as the two layers apart") {
  Generator gen(4);
  nn::Sequential fused{nn::Linear(5, 6, {}, gen), nn::ReLU(), nn::Linear(6, 3, {}, gen), nn::ReLU()};
  const Tensor x = randn({7, 5}, gen);
  const Tensor y = fused(x);
  sum(y * y).backward();
  // The same parameters applied one op at a time.
  auto& l0 = dynamic_cast<nn::Linear&>(fused[0]);
  auto& l2 = dynamic_cast<nn::Linear&>(fused[2]);
  const Tensor w0 = l0.weight.detach().requires_grad_(), b0 = l0.bias.detach().requires_grad_();
  const Tensor w2 = l2.weight.detach().requires_grad_(), b2 = l2.bias.detach().requires_grad_();
  const Tensor h = relu(add(matmul(x, w0.t()), b0));
  const Tensor ref = relu(add(matmul(h, w2.t()), b2));
  sum(ref * ref).backward();
  const auto close = [](const Tensor& a, const Tensor& b) {
    const auto va = values(a), vb = values(b);
    REQUIRE(va.size() == vb.size());
    for (std::size_t i = 0; i < va.size(); ++i) CHECK(va[i] == doctest::Approx(vb[i]).epsilon(1e-5));
  };
  close(y, ref);
  close(l0.weight.grad(), w0.grad());
  close(l0.bias.grad(), b0.grad());
  close(l2.weight.grad(), w2.grad());
  close(l2.bias.grad(), b2.grad());
}
