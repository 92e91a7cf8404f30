#include "experts.h"

#include <cmath>

#include "../core/autograd.h"
#include "../core/ops.h"
#include "gate.h"

namespace ladon::mtl {

namespace {
// PyTorch's Linear default, per expert: U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
Tensor linear_init(const Shape& shape, std::int64_t fan_in, Generator& gen) {
  const double bound = 1.0 / std::sqrt(static_cast<double>(fan_in));
  return uniform(shape, -bound, bound, gen).requires_grad_();
}
}  // namespace

ExpertBank::ExpertBank(std::int64_t in, std::int64_t experts, std::vector<std::int64_t> hidden, Generator& gen)
    : in_(in), experts_(experts), hidden_(std::move(hidden)) {
  LADON_CHECK(in > 0 && experts > 0 && !hidden_.empty(), "ExpertBank", "needs in > 0, experts > 0 and at least one ",
              "hidden size; got in=", in, " experts=", experts, " hidden=", shape_str(hidden_));
  for (std::int64_t h : hidden_)
    LADON_CHECK(h > 0, "ExpertBank", "expert hidden sizes ", shape_str(hidden_), ": each must be positive");
  first_weight_ = linear_init({in, experts * hidden_[0]}, in, gen);
  first_bias_ = linear_init({experts * hidden_[0]}, in, gen);
  for (std::size_t l = 1; l < hidden_.size(); ++l) {
    weights_.push_back(linear_init({experts, hidden_[l - 1], hidden_[l]}, hidden_[l - 1], gen));
    biases_.push_back(linear_init({experts, 1, hidden_[l]}, hidden_[l - 1], gen));
  }
}

Tensor ExpertBank::forward(const Tensor& x) {
  LADON_CHECK(x.dim() == 2 && x.shape()[1] == in_, "ExpertBank", "expects input [batch, ", in_, "], got ",
              shape_str(x.shape()));
  const std::int64_t batch = x.shape()[0];
  // linear() adds the bias and applies the ReLU in the GEMM's epilogue, and its backward takes
  // them in one pass: three passes over [batch, experts * h] become one each way.
  Tensor h = linear(x, first_weight_.t(), first_bias_, Activation::relu).reshape({batch, experts_, hidden_[0]});
  if (weights_.empty()) return h;
  h = h.transpose(0, 1);  // [experts, batch, h]: a view, the batched GEMM reads it in place
  for (std::size_t l = 0; l < weights_.size(); ++l) h = relu(matmul(h, weights_[l]) + biases_[l]);
  return h.transpose(0, 1);
}

void ExpertBank::keep_experts(const std::vector<std::int64_t>& experts) {
  const Tensor index = expert_index("ExpertBank::keep_experts", experts, experts_);
  const std::int64_t kept = index.numel(), h0 = hidden_[0];
  NoGradGuard no_grad;
  // The first layer holds expert e's columns at [e*h0, (e+1)*h0): select whole blocks of them.
  first_weight_ = index_select(first_weight_.reshape({in_, experts_, h0}), 1, index).reshape({in_, kept * h0});
  first_weight_.requires_grad_();
  first_bias_ = index_select(first_bias_.reshape({experts_, h0}), 0, index).reshape({kept * h0});
  first_bias_.requires_grad_();
  for (std::size_t l = 0; l < weights_.size(); ++l) {
    weights_[l] = index_select(weights_[l], 0, index).requires_grad_();
    biases_[l] = index_select(biases_[l], 0, index).requires_grad_();
  }
  experts_ = kept;
}

void ExpertBank::visit(Visitor& v) {
  v("0.weight", first_weight_);
  v("0.bias", first_bias_);
  for (std::size_t l = 0; l < weights_.size(); ++l) {
    v(std::to_string(l + 1) + ".weight", weights_[l]);
    v(std::to_string(l + 1) + ".bias", biases_[l]);
  }
}

}  // namespace ladon::mtl
