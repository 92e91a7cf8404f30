// Optimizers: update parameters in place from their accumulated .grad(), using the fused one-pass
// kernels of kernels/optim.h. A step records nothing in the autograd graph, skips parameters whose
// gradient is undefined (they took no part in the last backward), and allocates per-parameter
// state on a parameter's first update.
//
//   nn::Adam opt(model.parameters(), {.lr = 1e-3});
//   opt.zero_grad(); loss.backward(); opt.step();
//
// Row-sparse gradients (sparse embedding tables, Tensor::row_grad): SGD, Adam and Adagrad update
// only the rows the gradient touches (repeated rows summed first), and only those rows' state:
//   SGD      exactly the dense update (needs momentum = 0: lazy momentum would differ);
//   Adagrad  exactly the dense update (an untouched row's sum and value would not move anyway);
//   Adam     lazy, as PyTorch's SparseAdam: a row's moments decay only on steps that touch it, and
//            the bias correction uses the parameter's step count. Untouched rows do not move.
// Weight decay must be 0 for a parameter with a row-sparse gradient (it would touch every row).
// RMSprop and AdamW read the gradient dense (Tensor::grad adds the rows into a dense tensor).
//
// Parameter groups give some parameters their own learning rate or weight decay; what a group
// leaves unset comes from the options (the second argument):
//
//   nn::AdamW opt({{trunk.parameters(), {.lr = 1e-4}},
//                  {head.parameters(), {.weight_decay = 0}}}, {.lr = 1e-3, .weight_decay = 0.01});
//
// state_dict() holds the per-group lr and weight decay, the other hyperparameters, and per
// parameter (in parameter order, groups concatenated) its step count and buffers; load_state_dict
// restores all of it into an optimizer built over parameters of the same shapes, so training
// resumes exactly where it stopped.
#pragma once

#include "layer_fence.h"

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "../core/tensor.h"
#include "state.h"

namespace ladon::nn {

// A group's own settings; unset ones come from the optimizer's options.
struct GroupOptions {
  std::optional<double> lr = std::nullopt;
  std::optional<double> weight_decay = std::nullopt;
};

struct ParamGroup {
  std::vector<Tensor> params = {};
  GroupOptions options = {};
};

class Optimizer : public Stateful {
 public:
  // params: contiguous float32 leaf tensors, each listed once (in all groups together), at least
  // one in all (a group may be empty). Copies of the handles are kept, so the optimizer updates the
  // very tensors the model holds. default_lr and default_weight_decay (the options' values, which
  // groups may override) are checked here; each optimizer's constructor then calls
  // validate_hyperparameters(). `buffers` names the per-parameter state tensors of this kind of
  // optimizer. `name` prefixes errors and tags the saved state.
  Optimizer(std::vector<ParamGroup> groups, double default_lr, double default_weight_decay,
            std::vector<std::string> buffers, const char* name);
  ~Optimizer() override;
  // State is per parameter; a copy would silently share or fork it, so optimizers only move.
  Optimizer(const Optimizer&) = delete;
  Optimizer& operator=(const Optimizer&) = delete;
  Optimizer(Optimizer&&) = default;
  Optimizer& operator=(Optimizer&&) = default;

  // Updates, under NoGradGuard, every parameter that has a gradient (see update()).
  void step();
  void zero_grad();                                              // drops every parameter's gradient
  const std::vector<Tensor>& params() const { return params_; }  // all groups, in order
  const char* name() const { return name_; }

  // Learning rate and weight decay per group. lr() is group 0's; set_lr(lr) sets every group.
  std::size_t num_groups() const { return groups_.size(); }
  std::vector<Tensor> group_params(std::size_t group) const;
  double lr() const { return lr(0); }
  double lr(std::size_t group) const;
  void set_lr(double lr);
  void set_lr(std::size_t group, double lr);
  double weight_decay(std::size_t group = 0) const;
  void set_weight_decay(std::size_t group, double weight_decay);

  // The step count of parameter i: how many updates it has had (0 before its first).
  std::int64_t param_steps(std::size_t i) const;

  StateDict state_dict() const override;
  void check_state_dict(const StateDict& state) const override;
  void load_state_dict(const StateDict& state) override;

 protected:
  struct ParamState {
    std::int64_t step = 0;
    std::vector<Tensor> buffers;  // one per buffer name; undefined until first needed
  };
  // A hyperparameter other than lr and weight decay, saved and restored with the state.
  struct Hyper {
    const char* name;
    double* number = nullptr;
    bool* flag = nullptr;
  };
  virtual std::vector<Hyper> hyperparameters() = 0;
  virtual void validate_hyperparameters() const = 0;  // throws on a bad value

  // One parameter's update, from step(): param and grad (contiguous, numel floats), its group's lr
  // and weight decay, and step, its update count including this one.
  struct Update {
    std::size_t index;
    std::int64_t numel;
    float* param;
    const float* grad;
    double lr, weight_decay;
    std::int64_t step;
  };
  virtual void update(const Update& u) = 0;
  // One parameter's update from a row-sparse gradient (weight decay 0), from step(): n rows, each
  // once and ascending, of a [num, dim] table, their gradient rows [n, dim], the group's lr and the
  // step count including this one. Only those rows of the parameter and its buffers are touched.
  struct RowUpdate {
    std::size_t index;
    std::int64_t n, dim;
    const std::int64_t* rows;
    float* param;
    const float* grad;
    double lr;
    std::int64_t step;
  };
  virtual void update_rows(const RowUpdate& u);
  // Whether update_rows() may be given a row-sparse gradient (else it is made dense).
  virtual bool row_updates() const { return false; }
  // Parameter i's row-sparse gradient (it must have one) with every row once (ascending, values
  // summed).
  RowGrad sparse_gradient(std::size_t i) const;

  // Options as a group sees them: the optimizer's own with the group's lr and weight decay.
  template <class Options>
  Options group_options(Options options, std::size_t group) const {
    options.lr = lr(group);
    options.weight_decay = weight_decay(group);
    return options;
  }
  ParamState& state(std::size_t i) { return state_[i]; }
  // Buffer b of parameter i, created with initial_value(b) on first use.
  Tensor& buffer(std::size_t i, std::size_t b);
  // What buffer b holds before a parameter's first update (zeros unless an optimizer says).
  virtual double initial_value(std::size_t /*b*/) const { return 0.0; }

  const char* name_;

 private:
  struct Group {
    std::size_t begin, end;  // the group's parameters are params_[begin, end)
    double lr, weight_decay;
  };
  // The gradient of parameter i as a contiguous float32 tensor, or undefined when it has none.
  Tensor gradient(std::size_t i) const;

  std::vector<Tensor> params_;
  std::vector<Group> groups_;
  std::vector<std::size_t> group_of_;
  std::vector<std::string> buffer_names_;
  std::vector<ParamState> state_;
};

struct SGDOptions {
  double lr = 0.01;
  double momentum = 0;
  double dampening = 0;
  double weight_decay = 0;  // L2: added to the gradient as weight_decay * param
  bool nesterov = false;    // needs momentum > 0 and dampening = 0
};

// PyTorch's SGD: g = grad + wd p; with momentum, buf = g on the first step and then
// buf = momentum buf + (1 - dampening) g, and g = buf (or g + momentum buf for Nesterov);
// p -= lr g.
class SGD : public Optimizer {
 public:
  explicit SGD(std::vector<Tensor> params, SGDOptions options = {});
  explicit SGD(std::vector<ParamGroup> groups, SGDOptions options = {});
  SGDOptions options(std::size_t group = 0) const;  // with the group's lr and weight decay

 protected:
  bool row_updates() const override { return true; }
  std::vector<Hyper> hyperparameters() override;
  void validate_hyperparameters() const override;
  void update(const Update& u) override;
  void update_rows(const RowUpdate& u) override;

 private:
  SGDOptions options_;
};

struct AdamOptions {
  double lr = 1e-3;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 0;  // Adam: L2 added to the gradient; AdamW: decoupled decay
};

// Adam (Kingma & Ba) as PyTorch computes it: g = grad + wd p; m = b1 m + (1 - b1) g;
// v = b2 v + (1 - b2) g^2; p -= lr / (1 - b1^t) * m / (sqrt(v / (1 - b2^t)) + eps), with t the
// parameter's own step count.
class Adam : public Optimizer {
 public:
  explicit Adam(std::vector<Tensor> params, AdamOptions options = {});
  explicit Adam(std::vector<ParamGroup> groups, AdamOptions options = {});
  AdamOptions options(std::size_t group = 0) const;

 protected:
  bool row_updates() const override { return !decoupled_; }  // AdamW decays every row
  Adam(std::vector<ParamGroup> groups, AdamOptions options, bool decoupled, const char* name);
  std::vector<Hyper> hyperparameters() override;
  void validate_hyperparameters() const override;
  void update(const Update& u) override;
  void update_rows(const RowUpdate& u) override;

 private:
  AdamOptions options_;
  bool decoupled_;
};

// AdamW (Loshchilov & Hutter): weight decay decoupled from the gradient. Each step first shrinks
// p by (1 - lr wd), then applies Adam's update computed from the raw gradient. PyTorch's default
// weight decay, 0.01.
struct AdamWOptions {
  double lr = 1e-3;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 1e-2;
};

class AdamW : public Adam {
 public:
  explicit AdamW(std::vector<Tensor> params, AdamWOptions options = {});
  explicit AdamW(std::vector<ParamGroup> groups, AdamWOptions options = {});
};

struct RMSpropOptions {
  double lr = 1e-2;
  double alpha = 0.99;  // smoothing of the squared-gradient average
  double eps = 1e-8;
  double weight_decay = 0;  // L2
  double momentum = 0;
  bool centered = false;  // divide by the estimated variance instead of the raw second moment
};

// PyTorch's RMSprop: g = grad + wd p; s = alpha s + (1 - alpha) g^2; centered: a = alpha a +
// (1 - alpha) g and d = sqrt(s - a^2) + eps, else d = sqrt(s) + eps; with momentum b = momentum b +
// g / d and p -= lr b, else p -= lr g / d. Every buffer starts at zero.
class RMSprop : public Optimizer {
 public:
  explicit RMSprop(std::vector<Tensor> params, RMSpropOptions options = {});
  explicit RMSprop(std::vector<ParamGroup> groups, RMSpropOptions options = {});
  RMSpropOptions options(std::size_t group = 0) const;

 protected:
  std::vector<Hyper> hyperparameters() override;
  void validate_hyperparameters() const override;
  void update(const Update& u) override;

 private:
  RMSpropOptions options_;
};

struct AdagradOptions {
  double lr = 1e-2;
  double lr_decay = 0;
  double weight_decay = 0;  // L2
  double initial_accumulator_value = 0;
  double eps = 1e-10;
};

// PyTorch's Adagrad: at a parameter's step t (from 1), g = grad + wd p; s += g^2;
// p -= lr / (1 + (t - 1) lr_decay) * g / (sqrt(s) + eps); s starts at initial_accumulator_value.
class Adagrad : public Optimizer {
 public:
  explicit Adagrad(std::vector<Tensor> params, AdagradOptions options = {});
  explicit Adagrad(std::vector<ParamGroup> groups, AdagradOptions options = {});
  AdagradOptions options(std::size_t group = 0) const;

 protected:
  bool row_updates() const override { return true; }
  double initial_value(std::size_t) const override { return options_.initial_accumulator_value; }
  std::vector<Hyper> hyperparameters() override;
  void validate_hyperparameters() const override;
  void update(const Update& u) override;
  void update_rows(const RowUpdate& u) override;

 private:
  AdagradOptions options_;
};

}  // namespace ladon::nn
