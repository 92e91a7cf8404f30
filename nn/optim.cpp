#include "optim.h"

#include <unordered_set>

#include "../core/autograd.h"
#include "../kernels/optim.h"

namespace ladon::nn {

namespace {

void check_lr(const char* op, double lr) {
  // lr >= 0 is false for NaN, so NaN is rejected too.
  LADON_CHECK(lr >= 0.0, op, "lr must be >= 0, got ", lr);
}

void check_options(const SGDOptions& o) {
  check_lr("SGD", o.lr);
  LADON_CHECK(o.momentum >= 0.0, "SGD", "momentum must be >= 0, got ", o.momentum);
  LADON_CHECK(o.dampening >= 0.0 && o.dampening <= 1.0, "SGD", "dampening must be in [0, 1], got ", o.dampening);
  LADON_CHECK(o.weight_decay >= 0.0, "SGD", "weight_decay must be >= 0, got ", o.weight_decay);
  LADON_CHECK(!o.nesterov || (o.momentum > 0.0 && o.dampening == 0.0), "SGD",
              "nesterov needs momentum > 0 and dampening = 0, got momentum = ", o.momentum,
              ", dampening = ", o.dampening);
}

void check_options(const AdamOptions& o) {
  check_lr("Adam", o.lr);
  LADON_CHECK(o.beta1 >= 0.0 && o.beta1 < 1.0, "Adam", "beta1 must be in [0, 1), got ", o.beta1);
  LADON_CHECK(o.beta2 >= 0.0 && o.beta2 < 1.0, "Adam", "beta2 must be in [0, 1), got ", o.beta2);
  LADON_CHECK(o.eps >= 0.0, "Adam", "eps must be >= 0, got ", o.eps);
  LADON_CHECK(o.weight_decay >= 0.0, "Adam", "weight_decay must be >= 0, got ", o.weight_decay);
}

}  // namespace

// ---- Optimizer ----------------------------------------------------------------------------------

Optimizer::Optimizer(std::vector<Tensor> params, const char* name) : name_(name), params_(std::move(params)) {
  LADON_CHECK(!params_.empty(), name_,
              "got an empty parameter list (does every module's visit() list its parameters?)");
  std::unordered_set<const TensorImpl*> seen;
  for (std::size_t i = 0; i < params_.size(); ++i) {
    const Tensor& p = params_[i];
    LADON_CHECK(p.defined(), name_, "parameter ", i, " is an undefined tensor");
    LADON_CHECK(p.dtype() == Dtype::float32, name_, "parameter ", i, " of shape ", shape_str(p.shape()),
                " is ", dtype_name(p.dtype()), ", not float32");
    LADON_CHECK(p.is_leaf(), name_, "parameter ", i, " of shape ", shape_str(p.shape()),
                " is not a leaf (it was computed from other tensors); optimize the tensors it came from");
    // The fused kernels walk the elements as one flat array.
    LADON_CHECK(p.is_contiguous(), name_, "parameter ", i, " of shape ", shape_str(p.shape()),
                " is not contiguous");
    LADON_CHECK(seen.insert(p.impl().get()).second, name_, "parameter ", i, " of shape ", shape_str(p.shape()),
                " is listed twice; it would be updated twice per step");
  }
}

Optimizer::~Optimizer() = default;

void Optimizer::zero_grad() {
  for (const Tensor& p : params_) p.zero_grad();
}

Tensor Optimizer::gradient(std::size_t i) const {
  const Tensor& p = params_[i];
  const Tensor g = p.grad();
  if (!g.defined()) return g;
  LADON_CHECK(g.shape() == p.shape(), name_, "gradient of shape ", shape_str(g.shape()), " for parameter ", i,
              " of shape ", shape_str(p.shape()));
  LADON_CHECK(g.dtype() == Dtype::float32, name_, "gradient of parameter ", i, " is ", dtype_name(g.dtype()),
              ", not float32");
  return g.contiguous();
}

// ---- SGD ----------------------------------------------------------------------------------------

SGD::SGD(std::vector<Tensor> params, SGDOptions options)
    : Optimizer(std::move(params), "SGD"), options_(options), momentum_buffers_(this->params().size()) {
  check_options(options_);
}

void SGD::set_lr(double lr) {
  check_lr("SGD", lr);
  options_.lr = lr;
}

void SGD::step() {
  NoGradGuard no_grad;
  const SGDOptions& o = options_;
  for (std::size_t i = 0; i < params().size(); ++i) {
    const Tensor g = gradient(i);
    if (!g.defined()) continue;
    Tensor p = params()[i];
    float* buffer = nullptr;
    bool first_step = false;
    if (o.momentum != 0.0) {
      Tensor& buf = momentum_buffers_[i];
      first_step = !buf.defined();
      if (first_step) buf = empty(p.shape());  // the first step writes it whole: buf = g
      buffer = buf.data<float>();
    }
    kernels::sgd_update(p.numel(), p.data<float>(), g.data<float>(), buffer, static_cast<float>(o.lr),
                        static_cast<float>(o.momentum), static_cast<float>(o.dampening),
                        static_cast<float>(o.weight_decay), o.nesterov, first_step);
  }
}

// ---- Adam ---------------------------------------------------------------------------------------

Adam::Adam(std::vector<Tensor> params, AdamOptions options)
    : Optimizer(std::move(params), "Adam"), options_(options), state_(this->params().size()) {
  check_options(options_);
}

void Adam::set_lr(double lr) {
  check_lr("Adam", lr);
  options_.lr = lr;
}

void Adam::step() {
  NoGradGuard no_grad;
  const AdamOptions& o = options_;
  for (std::size_t i = 0; i < params().size(); ++i) {
    const Tensor g = gradient(i);
    if (!g.defined()) continue;
    Tensor p = params()[i];
    State& s = state_[i];
    if (!s.exp_avg.defined()) {
      s.exp_avg = zeros(p.shape());
      s.exp_avg_sq = zeros(p.shape());
    }
    ++s.step;
    kernels::adam_update(p.numel(), p.data<float>(), g.data<float>(), s.exp_avg.data<float>(),
                         s.exp_avg_sq.data<float>(), static_cast<float>(o.lr), static_cast<float>(o.beta1),
                         static_cast<float>(o.beta2), static_cast<float>(o.eps), static_cast<float>(o.weight_decay),
                         /*decoupled_weight_decay=*/false, s.step);
  }
}

}  // namespace ladon::nn
