#include "rnn.h"

#include <cmath>
#include <string>

#include "../core/ops.h"

namespace ladon::nn {

RecurrentBase::RecurrentBase(const char* name, std::int64_t gates, std::int64_t input_size, std::int64_t hidden_size,
                             RNNOptions options, Generator& gen)
    : name_(name), gates_(gates), input_size_(input_size), hidden_size_(hidden_size), options_(options) {
  LADON_CHECK(input_size > 0 && hidden_size > 0, name, "sizes must be positive, got input_size=", input_size,
              " hidden_size=", hidden_size);
  LADON_CHECK(options.num_layers > 0, name, "num_layers must be positive, got ", options.num_layers);
  const double bound = 1.0 / std::sqrt(static_cast<double>(hidden_size));
  for (std::int64_t l = 0; l < options.num_layers; ++l) {
    const std::int64_t in = l == 0 ? input_size : hidden_size;
    weight_ih.push_back(uniform({gates * hidden_size, in}, -bound, bound, gen).requires_grad_());
    weight_hh.push_back(uniform({gates * hidden_size, hidden_size}, -bound, bound, gen).requires_grad_());
    if (options.bias) {
      bias_ih.push_back(uniform({gates * hidden_size}, -bound, bound, gen).requires_grad_());
      bias_hh.push_back(uniform({gates * hidden_size}, -bound, bound, gen).requires_grad_());
    }
  }
}

void RecurrentBase::visit(Visitor& v) {
  for (std::size_t l = 0; l < weight_ih.size(); ++l) {
    const std::string suffix = "_l" + std::to_string(l);
    v("weight_ih" + suffix, weight_ih[l]);
    v("weight_hh" + suffix, weight_hh[l]);
    if (l < bias_ih.size()) {
      v("bias_ih" + suffix, bias_ih[l]);
      v("bias_hh" + suffix, bias_hh[l]);
    }
  }
}

Tensor RecurrentBase::time_major(const Tensor& x) const {
  LADON_CHECK(x.defined() && x.dtype() == Dtype::float32, name_, "expected a float32 input");
  LADON_CHECK(x.dim() == 3, name_, "expected a 3-D input ",
              options_.batch_first ? "[B, T, input_size]" : "[T, B, input_size]", ", got ", shape_str(x.shape()));
  LADON_CHECK(x.shape()[2] == input_size_, name_, "input ", shape_str(x.shape()), " has feature size ",
              x.shape()[2], ", expected input_size ", input_size_);
  LADON_CHECK(x.shape()[0] > 0 && x.shape()[1] > 0, name_, "input ", shape_str(x.shape()),
              " has no time steps or no batch");
  return options_.batch_first ? x.transpose(0, 1) : x;
}

Tensor RecurrentBase::initial_state(const Tensor& s, const char* what, std::int64_t batch) const {
  const Shape expected{options_.num_layers, batch, hidden_size_};
  if (!s.defined()) return zeros(expected);
  LADON_CHECK(s.dtype() == Dtype::float32 && s.shape() == expected, name_, what, " must be float32 ",
              shape_str(expected), ", got ", dtype_name(s.dtype()), " ", shape_str(s.shape()));
  return s;
}

Tensor RecurrentBase::input_projection(const Tensor& seq, std::size_t layer) const {
  // One GEMM over all time steps; both biases are folded in here for LSTM (they only ever add).
  Tensor proj = matmul(seq, weight_ih[layer].t());
  if (!bias_ih.empty()) proj = add(proj, bias_ih[layer]);
  return proj;
}

LSTMOutput LSTM::forward(const Tensor& x, const Tensor& h0, const Tensor& c0) {
  Tensor seq = time_major(x);
  const std::int64_t steps = seq.shape()[0], batch = seq.shape()[1], hs = hidden_size_;
  const Tensor h_init = initial_state(h0, "h0", batch), c_init = initial_state(c0, "c0", batch);
  std::vector<Tensor> h_final, c_final;
  for (std::size_t l = 0; l < weight_ih.size(); ++l) {
    Tensor proj = input_projection(seq, l);
    if (!bias_hh.empty()) proj = add(proj, bias_hh[l]);
    const Tensor w_hh_t = weight_hh[l].t();
    Tensor h = h_init.narrow(0, static_cast<std::int64_t>(l), 1).squeeze(0);
    Tensor c = c_init.narrow(0, static_cast<std::int64_t>(l), 1).squeeze(0);
    std::vector<Tensor> outputs;
    outputs.reserve(static_cast<std::size_t>(steps));
    for (std::int64_t t = 0; t < steps; ++t) {
      const Tensor gates = add(proj.narrow(0, t, 1).squeeze(0), matmul(h, w_hh_t));  // [B, 4H]
      const Tensor i = sigmoid(gates.narrow(1, 0, hs));
      const Tensor f = sigmoid(gates.narrow(1, hs, hs));
      const Tensor g = tanh(gates.narrow(1, 2 * hs, hs));
      const Tensor o = sigmoid(gates.narrow(1, 3 * hs, hs));
      c = add(mul(f, c), mul(i, g));
      h = mul(o, tanh(c));
      outputs.push_back(h);
    }
    seq = stack(outputs, 0);
    h_final.push_back(h);
    c_final.push_back(c);
  }
  return {options_.batch_first ? seq.transpose(0, 1) : seq, stack(h_final, 0), stack(c_final, 0)};
}

GRUOutput GRU::forward(const Tensor& x, const Tensor& h0) {
  Tensor seq = time_major(x);
  const std::int64_t steps = seq.shape()[0], batch = seq.shape()[1], hs = hidden_size_;
  const Tensor h_init = initial_state(h0, "h0", batch);
  std::vector<Tensor> h_final;
  for (std::size_t l = 0; l < weight_ih.size(); ++l) {
    const Tensor proj = input_projection(seq, l);  // b_hn sits inside r * (.), so b_hh stays per step
    const Tensor w_hh_t = weight_hh[l].t();
    Tensor h = h_init.narrow(0, static_cast<std::int64_t>(l), 1).squeeze(0);
    std::vector<Tensor> outputs;
    outputs.reserve(static_cast<std::size_t>(steps));
    for (std::int64_t t = 0; t < steps; ++t) {
      const Tensor gi = proj.narrow(0, t, 1).squeeze(0);  // [B, 3H]
      Tensor gh = matmul(h, w_hh_t);
      if (!bias_hh.empty()) gh = add(gh, bias_hh[l]);
      const Tensor r = sigmoid(add(gi.narrow(1, 0, hs), gh.narrow(1, 0, hs)));
      const Tensor z = sigmoid(add(gi.narrow(1, hs, hs), gh.narrow(1, hs, hs)));
      const Tensor n = tanh(add(gi.narrow(1, 2 * hs, hs), mul(r, gh.narrow(1, 2 * hs, hs))));
      h = add(n, mul(z, sub(h, n)));  // (1 - z) n + z h
      outputs.push_back(h);
    }
    seq = stack(outputs, 0);
    h_final.push_back(h);
  }
  return {options_.batch_first ? seq.transpose(0, 1) : seq, stack(h_final, 0)};
}

}  // namespace ladon::nn
