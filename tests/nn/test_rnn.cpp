// LSTM and GRU against steps worked out by hand, PyTorch's names and shapes, and gradient checks
// through several time steps.
#include <doctest/doctest.h>

#include <cmath>

#include "approx.h"
#include "ladon.h"
#include "nn/rnn.h"
#include "tests/helpers.h"

using namespace ladon;
using testing::values;
using ladon::testing::rel;

namespace {
double sig(double x) { return 1 / (1 + std::exp(-x)); }
using In = const std::vector<Tensor>&;
}  // namespace

TEST_CASE("LSTM: two steps by hand, PyTorch's gate order i, f, g, o") {
  nn::LSTM lstm(1, 1);
  lstm.weight_ih[0] = tensor({1, 2, 3, 4}, {4, 1}).requires_grad_();
  lstm.weight_hh[0] = tensor({0.5f, -1, 0, 1}, {4, 1}).requires_grad_();
  lstm.bias_ih[0] = tensor({0, 0, 0, 0.5f}).requires_grad_();
  lstm.bias_hh[0] = tensor({0.1f, 0, 0, 0}).requires_grad_();
  // x = [1, -1] over time, h0 = 1, c0 = 2. Step 1 pre-activations:
  // i: 1 + 0.5 + 0.1 = 1.6, f: 2 - 1 = 1, g: 3 + 0 = 3, o: 4 + 1 + 0.5 = 5.5.
  const double c1 = sig(1) * 2 + sig(1.6) * std::tanh(3.0);
  const double h1 = sig(5.5) * std::tanh(c1);
  // Step 2 with x = -1: i: -1 + 0.5 h1 + 0.1, f: -2 - h1, g: -3, o: -4 + h1 + 0.5.
  const double c2 = sig(-2 - h1) * c1 + sig(-0.9 + 0.5 * h1) * std::tanh(-3.0);
  const double h2 = sig(-3.5 + h1) * std::tanh(c2);
  const nn::LSTMOutput out = lstm(tensor({1, -1}, {2, 1, 1}), ones({1, 1, 1}), full({1, 1, 1}, 2.0));
  CHECK(out.output.shape() == Shape{2, 1, 1});
  CHECK(out.h.shape() == Shape{1, 1, 1});
  CHECK(out.c.shape() == Shape{1, 1, 1});
  CHECK(values(out.output)[0] == rel(h1, 1e-5));
  CHECK(values(out.output)[1] == rel(h2, 1e-5));
  CHECK(values(out.h)[0] == rel(h2, 1e-5));
  CHECK(values(out.c)[0] == rel(c2, 1e-5));
}

TEST_CASE("GRU: one step by hand, PyTorch's gate order r, z, n and b_hn inside r") {
  nn::GRU gru(1, 1);
  gru.weight_ih[0] = tensor({1, 2, 3}, {3, 1}).requires_grad_();
  gru.weight_hh[0] = tensor({0.5f, -1, 2}, {3, 1}).requires_grad_();
  gru.bias_ih[0] = tensor({0, 0, 0.2f}).requires_grad_();
  gru.bias_hh[0] = tensor({0.1f, 0, -0.5f}).requires_grad_();
  // x = 1, h0 = 1: r = σ(1 + 0.5 + 0.1), z = σ(2 - 1), n = tanh(3 + 0.2 + r (2 - 0.5)), h = (1 - z) n + z.
  const double r = sig(1.6), z = sig(1.0), n = std::tanh(3.2 + r * 1.5);
  const double h1 = (1 - z) * n + z;
  const nn::GRUOutput out = gru(ones({1, 1, 1}), ones({1, 1, 1}));
  CHECK(values(out.output)[0] == rel(h1, 1e-5));
  CHECK(values(out.h)[0] == rel(h1, 1e-5));
}

TEST_CASE("LSTM and GRU: PyTorch names and shapes, layers stack, batch_first transposes") {
  Generator gen(11);
  nn::LSTM lstm(3, 4, {.num_layers = 2}, gen);
  std::vector<std::string> names;
  std::vector<Shape> shapes;
  for (auto& [name, t] : lstm.named_parameters()) {
    names.push_back(name);
    shapes.push_back(t.shape());
  }
  CHECK(names == std::vector<std::string>{"weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0", "weight_ih_l1",
                                          "weight_hh_l1", "bias_ih_l1", "bias_hh_l1"});
  CHECK(shapes == std::vector<Shape>{{16, 3}, {16, 4}, {16}, {16}, {16, 4}, {16, 4}, {16}, {16}});
  // Init: U(-1/sqrt(4), 1/sqrt(4)).
  for (const Tensor& p : lstm.parameters())
    for (float v : values(p)) CHECK(std::abs(v) <= 0.5f);

  const Tensor x = randn({5, 2, 3}, gen);
  const nn::LSTMOutput out = lstm(x);
  CHECK(out.output.shape() == Shape{5, 2, 4});
  CHECK(out.h.shape() == Shape{2, 2, 4});
  // The last layer's final h is the output's last step.
  CHECK(allclose(out.h.narrow(0, 1, 1).squeeze(0), out.output.narrow(0, 4, 1).squeeze(0)));

  // Layer 1 reads layer 0's outputs: two single-layer LSTMs with the same weights agree.
  nn::LSTM first(3, 4), second(4, 4);
  first.weight_ih[0] = lstm.weight_ih[0];
  first.weight_hh[0] = lstm.weight_hh[0];
  first.bias_ih[0] = lstm.bias_ih[0];
  first.bias_hh[0] = lstm.bias_hh[0];
  second.weight_ih[0] = lstm.weight_ih[1];
  second.weight_hh[0] = lstm.weight_hh[1];
  second.bias_ih[0] = lstm.bias_ih[1];
  second.bias_hh[0] = lstm.bias_hh[1];
  const nn::LSTMOutput a = first(x);
  const nn::LSTMOutput b = second(a.output);
  CHECK(allclose(b.output, out.output, 1e-5, 1e-6));
  CHECK(allclose(a.c.squeeze(0), out.c.narrow(0, 0, 1).squeeze(0), 1e-5, 1e-6));

  // batch_first: same weights, input and output transposed, states unchanged.
  Generator gen2(11);
  nn::LSTM bf(3, 4, {.num_layers = 2, .batch_first = true}, gen2);
  const nn::LSTMOutput o2 = bf(x.transpose(0, 1).contiguous());
  CHECK(o2.output.shape() == Shape{2, 5, 4});
  CHECK(allclose(o2.output.transpose(0, 1).contiguous(), out.output, 1e-5, 1e-6));
  CHECK(allclose(o2.h, out.h, 1e-5, 1e-6));

  nn::GRU gru(3, 2, {.num_layers = 3, .bias = false, .batch_first = true});
  CHECK(gru.parameters().size() == 6);
  const nn::GRUOutput g = gru(randn({4, 6, 3}));
  CHECK(g.output.shape() == Shape{4, 6, 2});
  CHECK(g.h.shape() == Shape{3, 4, 2});
}

TEST_CASE("LSTM and GRU: bad inputs and states") {
  nn::LSTM lstm(2, 8);
  CHECK_THROWS_WITH_AS(lstm(zeros({5, 3, 4})), "LSTM: input [5, 3, 4] has feature size 4, expected input_size 2",
                       Error);
  CHECK_THROWS_WITH_AS(lstm(zeros({5, 2})), "LSTM: expected a 3-D input [T, B, input_size], got [5, 2]", Error);
  CHECK_THROWS_WITH_AS(lstm(zeros({5, 3, 2}), zeros({1, 2, 8})), "LSTM: h0 must be float32 [1, 3, 8], got float32 [1, 2, 8]",
                       Error);
  CHECK_THROWS_WITH_AS(lstm(zeros({5, 3, 2}), Tensor(), zeros({3, 8})),
                       "LSTM: c0 must be float32 [1, 3, 8], got float32 [3, 8]", Error);
  nn::GRU gru(2, 3, {.batch_first = true});
  CHECK_THROWS_WITH_AS(gru(zeros({5, 3})), "GRU: expected a 3-D input [B, T, input_size], got [5, 3]", Error);
  CHECK_THROWS_WITH_AS(nn::GRU(2, 3, {.num_layers = 0}), "GRU: num_layers must be positive, got 0", Error);
}

TEST_CASE("LSTM and GRU gradients through 3 time steps match finite differences") {
  Generator gen(5);
  nn::LSTM lstm(2, 2, {.num_layers = 2}, gen);
  const auto f_lstm = [&](In in) {
    lstm.weight_ih[0] = in[3];
    lstm.weight_hh[0] = in[4];
    lstm.bias_ih[0] = in[5];
    lstm.bias_hh[1] = in[6];
    const nn::LSTMOutput out = lstm(in[0], in[1], in[2]);
    return cat({out.output.reshape({-1}), out.h.reshape({-1}), out.c.reshape({-1})}, 0);
  };
  const GradcheckResult r1 = gradcheck(f_lstm, {randn({3, 2, 2}, gen), randn({2, 2, 2}, gen), randn({2, 2, 2}, gen),
                                                lstm.weight_ih[0], lstm.weight_hh[0], lstm.bias_ih[0], lstm.bias_hh[1]});
  INFO(r1.message);
  CHECK(r1.ok);

  nn::GRU gru(2, 3, {.batch_first = true}, gen);
  const auto f_gru = [&](In in) {
    gru.weight_ih[0] = in[2];
    gru.weight_hh[0] = in[3];
    gru.bias_hh[0] = in[4];
    const nn::GRUOutput out = gru(in[0], in[1]);
    return cat({out.output.reshape({-1}), out.h.reshape({-1})}, 0);
  };
  const GradcheckResult r2 = gradcheck(
      f_gru, {randn({2, 3, 2}, gen), randn({1, 2, 3}, gen), gru.weight_ih[0], gru.weight_hh[0], gru.bias_hh[0]});
  INFO(r2.message);
  CHECK(r2.ok);
}
