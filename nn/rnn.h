// Recurrent layers: LSTM and GRU, multi-layer, with PyTorch's gate order, parameter names
// (weight_ih_l0, weight_hh_l0, bias_ih_l0, bias_hh_l0, ...) and shapes, so weights carry over.
// Built from matmul, sigmoid, tanh, narrow and stack: autograd does backpropagation through time.
//
// Input [T, B, input_size], or [B, T, input_size] with batch_first. Initial states h0 (and c0 for
// LSTM) are [num_layers, B, hidden_size], zeros when omitted. Results: output holds the last layer's
// h at every step ([T, B, H], or [B, T, H] with batch_first); h and c hold every layer's final state
// ([num_layers, B, H], never batch-first, as in PyTorch).
//
//   LSTM: i = σ(W_ii x + b_ii + W_hi h + b_hi)    GRU: r = σ(W_ir x + b_ir + W_hr h + b_hr)
//         f = σ(W_if x + b_if + W_hf h + b_hf)         z = σ(W_iz x + b_iz + W_hz h + b_hz)
//         g = tanh(W_ig x + b_ig + W_hg h + b_hg)      n = tanh(W_in x + b_in + r * (W_hn h + b_hn))
//         o = σ(W_io x + b_io + W_ho h + b_ho)         h' = (1 - z) * n + z * h
//         c' = f * c + i * g,  h' = o * tanh(c')
// Gates are stacked in that order along dim 0 of each weight ([4H, .] for LSTM, [3H, .] for GRU).
#pragma once

#include "layer_fence.h"

#include <cstdint>
#include <vector>

#include "../core/random.h"
#include "../core/tensor.h"
#include "module.h"

namespace ladon::nn {

struct RNNOptions {
  std::int64_t num_layers = 1;
  bool bias = true;
  bool batch_first = false;
};

// Shared bookkeeping of LSTM and GRU: per-layer weights, their names, shape checks.
class RecurrentBase : public Module {
 public:
  void visit(Visitor& v) override;
  std::int64_t input_size() const { return input_size_; }
  std::int64_t hidden_size() const { return hidden_size_; }
  const RNNOptions& options() const { return options_; }

  // One entry per layer. weight_ih[l] is [gates * H, in_l] with in_0 = input_size, else H.
  std::vector<Tensor> weight_ih, weight_hh, bias_ih, bias_hh;

 protected:
  // Every parameter drawn from U(-1/sqrt(H), 1/sqrt(H)), as PyTorch does.
  RecurrentBase(const char* name, std::int64_t gates, std::int64_t input_size, std::int64_t hidden_size,
                RNNOptions options, Generator& gen);
  Tensor time_major(const Tensor& x) const;                            // checks x, returns [T, B, I]
  Tensor initial_state(const Tensor& s, const char* what, std::int64_t batch) const;  // checks or zeros
  Tensor input_projection(const Tensor& seq, std::size_t layer) const;  // [T, B, gates * H]

  const char* name_;
  std::int64_t gates_, input_size_, hidden_size_;
  RNNOptions options_;
};

struct LSTMOutput {
  Tensor output;  // [T, B, H] ([B, T, H] with batch_first)
  Tensor h;       // [num_layers, B, H]
  Tensor c;       // [num_layers, B, H]
};

class LSTM : public RecurrentBase {
 public:
  LSTM(std::int64_t input_size, std::int64_t hidden_size, RNNOptions options = {},
       Generator& gen = default_generator())
      : RecurrentBase("LSTM", 4, input_size, hidden_size, options, gen) {}
  LSTMOutput forward(const Tensor& x, const Tensor& h0 = Tensor(), const Tensor& c0 = Tensor());
  LSTMOutput operator()(const Tensor& x, const Tensor& h0 = Tensor(), const Tensor& c0 = Tensor()) {
    return forward(x, h0, c0);
  }
};

struct GRUOutput {
  Tensor output;  // [T, B, H] ([B, T, H] with batch_first)
  Tensor h;       // [num_layers, B, H]
};

class GRU : public RecurrentBase {
 public:
  GRU(std::int64_t input_size, std::int64_t hidden_size, RNNOptions options = {},
      Generator& gen = default_generator())
      : RecurrentBase("GRU", 3, input_size, hidden_size, options, gen) {}
  GRUOutput forward(const Tensor& x, const Tensor& h0 = Tensor());
  GRUOutput operator()(const Tensor& x, const Tensor& h0 = Tensor()) { return forward(x, h0); }
};

}  // namespace ladon::nn
