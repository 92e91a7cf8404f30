#include "optim.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <functional>
#include <unordered_set>

#include "../core/autograd.h"
#include "../core/parallel.h"
#include "../kernels/optim.h"

namespace ladon::nn {

namespace {

// The flat updates are elementwise, so a parameter split into chunks across the threads gives the
// same bits. Zen 5, mlp b256 (535k parameters), 2 threads: Adam's step 0.08 -> 0.05 ms; a chunk of
// 64k floats (256 KB of each array) keeps small tensors (biases) on the calling thread.
constexpr std::int64_t kUpdateGrain = std::int64_t{1} << 16;

void split_update(std::int64_t n, const std::function<void(std::int64_t, std::int64_t)>& fn) {
  parallel_for(0, n, kUpdateGrain, fn);
}

// The rule for every rate and coefficient that has no upper bound: `v >= 0` alone is false for
// NaN but lets +inf through, which turns the first step's parameters into inf or NaN.
bool finite_nonnegative(double v) { return std::isfinite(v) && v >= 0.0; }

void check_lr(const char* op, double lr) {
  LADON_CHECK(finite_nonnegative(lr), op, "lr must be finite and >= 0, got ", lr);
}

void check_weight_decay(const char* op, double wd) {
  LADON_CHECK(finite_nonnegative(wd), op, "weight_decay must be finite and >= 0, got ", wd);
}

std::vector<ParamGroup> one_group(std::vector<Tensor> params) {
  std::vector<ParamGroup> groups(1);
  groups[0].params = std::move(params);
  return groups;
}

std::string param_key(std::size_t i, const std::string& what) { return "param." + std::to_string(i) + "." + what; }
std::string group_key(std::size_t g, const char* what) { return "group." + std::to_string(g) + "." + what; }

}  // namespace

// ---- Optimizer ----------------------------------------------------------------------------------

Optimizer::Optimizer(std::vector<ParamGroup> groups, double default_lr, double default_weight_decay,
                     std::vector<std::string> buffers, const char* name)
    : name_(name), buffer_names_(std::move(buffers)) {
  std::unordered_set<const TensorImpl*> seen;
  for (std::size_t g = 0; g < groups.size(); ++g) {
    const GroupOptions& o = groups[g].options;
    Group group{params_.size(), params_.size(), o.lr.value_or(default_lr),
                o.weight_decay.value_or(default_weight_decay)};
    if (o.lr) LADON_CHECK(finite_nonnegative(*o.lr), name_, "group ", g, ": lr must be finite and >= 0, got ", *o.lr);
    if (o.weight_decay)
      LADON_CHECK(finite_nonnegative(*o.weight_decay), name_, "group ", g,
                  ": weight_decay must be finite and >= 0, got ", *o.weight_decay);
    for (Tensor& p : groups[g].params) {
      const std::size_t i = params_.size();
      LADON_CHECK(p.defined(), name_, "parameter ", i, " is an undefined tensor");
      LADON_CHECK(p.dtype() == Dtype::float32, name_, "parameter ", i, " of shape ", shape_str(p.shape()), " is ",
                  dtype_name(p.dtype()), ", not float32");
      LADON_CHECK(p.is_leaf(), name_, "parameter ", i, " of shape ", shape_str(p.shape()),
                  " is not a leaf (it was computed from other tensors); optimize the tensors it came from");
      // The fused kernels walk the elements as one flat array.
      LADON_CHECK(p.is_contiguous(), name_, "parameter ", i, " of shape ", shape_str(p.shape()), " is not contiguous");
      LADON_CHECK(seen.insert(p.impl().get()).second, name_, "parameter ", i, " of shape ", shape_str(p.shape()),
                  " is listed twice; it would be updated twice per step");
      params_.push_back(std::move(p));
      group_of_.push_back(g);
    }
    group.end = params_.size();
    groups_.push_back(group);
  }
  LADON_CHECK(!params_.empty(), name_,
              "got an empty parameter list (does every module's visit() list its parameters?)");
  check_lr(name_, default_lr);
  check_weight_decay(name_, default_weight_decay);
  state_.resize(params_.size());
  for (ParamState& s : state_) s.buffers.resize(buffer_names_.size());
}

Optimizer::~Optimizer() = default;

void Optimizer::zero_grad() {
  for (const Tensor& p : params_) p.zero_grad();
}

std::vector<Tensor> Optimizer::group_params(std::size_t group) const {
  LADON_CHECK(group < groups_.size(), name_, "group ", group, " does not exist (", groups_.size(), " groups)");
  const Group& g = groups_[group];
  return {params_.begin() + static_cast<std::ptrdiff_t>(g.begin), params_.begin() + static_cast<std::ptrdiff_t>(g.end)};
}

double Optimizer::lr(std::size_t group) const {
  LADON_CHECK(group < groups_.size(), name_, "group ", group, " does not exist (", groups_.size(), " groups)");
  return groups_[group].lr;
}

void Optimizer::set_lr(double lr) {
  check_lr(name_, lr);
  for (Group& g : groups_) g.lr = lr;
}

void Optimizer::set_lr(std::size_t group, double lr) {
  LADON_CHECK(group < groups_.size(), name_, "group ", group, " does not exist (", groups_.size(), " groups)");
  check_lr(name_, lr);
  groups_[group].lr = lr;
}

double Optimizer::weight_decay(std::size_t group) const {
  LADON_CHECK(group < groups_.size(), name_, "group ", group, " does not exist (", groups_.size(), " groups)");
  return groups_[group].weight_decay;
}

void Optimizer::set_weight_decay(std::size_t group, double weight_decay) {
  LADON_CHECK(group < groups_.size(), name_, "group ", group, " does not exist (", groups_.size(), " groups)");
  check_weight_decay(name_, weight_decay);
  groups_[group].weight_decay = weight_decay;
}

std::int64_t Optimizer::param_steps(std::size_t i) const {
  LADON_CHECK(i < state_.size(), name_, "parameter ", i, " does not exist (", state_.size(), " parameters)");
  return state_[i].step;
}

void Optimizer::step() {
  NoGradGuard no_grad;
  for (std::size_t i = 0; i < params_.size(); ++i) {
    const Group& group = groups_[group_of_[i]];
    Tensor& p = params_[i];
    if (row_updates() && p.row_grad().defined()) {
      LADON_CHECK(group.weight_decay == 0.0, name_, "parameter ", i, " of shape ", shape_str(p.shape()),
                  " has a row-sparse gradient; its weight decay must be 0 (got ", group.weight_decay,
                  "): decay would touch every row");
      const RowGrad rg = sparse_gradient(i);
      update_rows({i, rg.rows.numel(), p.shape()[1], rg.rows.data<std::int64_t>(), p.data<float>(),
                   rg.values.data<float>(), group.lr, ++state_[i].step});
      continue;
    }
    const Tensor g = gradient(i);
    if (!g.defined()) continue;  // no part in the last backward
    update({i, p.numel(), p.data<float>(), g.data<float>(), group.lr, group.weight_decay, ++state_[i].step});
  }
}

void Optimizer::update_rows(const RowUpdate& u) {
  detail::fail(name_, "internal error: parameter ", u.index, " got a row update, which ", name_, " does not make");
}

RowGrad Optimizer::sparse_gradient(std::size_t i) const {
  const Tensor& p = params_[i];
  const RowGrad g = p.row_grad();
  const std::int64_t n = g.rows.numel(), dim = p.shape()[1];
  const std::int64_t* rows = g.rows.data<std::int64_t>();
  std::int64_t top = 0;  // rows are in [0, table rows): row_sparse_gradient checks them
  for (std::int64_t k = 0; k < n; ++k) top = std::max(top, rows[k]);
  // The positions, stably sorted by row: an LSD radix sort in as few passes of at most 11-bit
  // digits as the largest row needs (1 for a 1k-row table, 2 for 4M rows; 8-bit digits took 2 and
  // 3). Stable, so a row's repeats stay in lookup order and are summed in the order the dense
  // gradient sums them. No comparisons to mispredict: std::sort of (row, position) pairs took
  // 0.1 ms of a 2,048-lookup step, more than the update itself.
  std::vector<std::int64_t> order(static_cast<std::size_t>(n)), other(static_cast<std::size_t>(n));
  for (std::int64_t k = 0; k < n; ++k) order[static_cast<std::size_t>(k)] = k;
  constexpr int kMaxDigit = 11;
  const int bits = std::bit_width(static_cast<std::uint64_t>(top));
  const int passes = (bits + kMaxDigit - 1) / kMaxDigit;
  const int digit = passes > 0 ? (bits + passes - 1) / passes : 0;
  const std::int64_t mask = (std::int64_t{1} << digit) - 1;
  std::vector<std::int64_t> start(static_cast<std::size_t>(mask + 2));
  for (int pass = 0, shift = 0; pass < passes; ++pass, shift += digit) {
    std::fill(start.begin(), start.end(), 0);
    for (std::int64_t k = 0; k < n; ++k) ++start[static_cast<std::size_t>(((rows[k] >> shift) & mask) + 1)];
    for (std::int64_t d = 0; d <= mask; ++d)
      start[static_cast<std::size_t>(d + 1)] += start[static_cast<std::size_t>(d)];
    for (const std::int64_t k : order)
      other[static_cast<std::size_t>(start[static_cast<std::size_t>((rows[k] >> shift) & mask)]++)] = k;
    order.swap(other);
  }
  const auto row_at = [&](std::int64_t j) { return rows[order[static_cast<std::size_t>(j)]]; };
  std::int64_t u = 0;
  for (std::int64_t j = 0; j < n; ++j) u += j == 0 || row_at(j) != row_at(j - 1);
  Tensor unique = empty({u}, Dtype::int64), sums = empty({u, dim});
  std::int64_t* out_rows = unique.data<std::int64_t>();
  float* out = sums.data<float>();
  const float* v = g.values.data<float>();
  for (std::int64_t j = 0, slot = -1; j < n; ++j) {
    if (j == 0 || row_at(j) != row_at(j - 1)) {
      out_rows[++slot] = row_at(j);
      std::fill_n(out + slot * dim, dim, 0.0f);  // sums start at zero, as in the dense gradient
    }
    const float* from = v + order[static_cast<std::size_t>(j)] * dim;
    for (std::int64_t d = 0; d < dim; ++d) out[slot * dim + d] += from[d];
  }
  return {unique, sums};
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

Tensor& Optimizer::buffer(std::size_t i, std::size_t b) {
  Tensor& t = state_[i].buffers[b];
  if (!t.defined()) t = full(params_[i].shape(), initial_value(b));
  return t;
}

// Saved layout: "optimizer" (the kind), "groups", per group "group.<g>.params", ".lr",
// ".weight_decay"; "hyper.<name>" per other hyperparameter; per parameter "param.<i>.step" and
// "param.<i>.<buffer>" for each buffer it has.
StateDict Optimizer::state_dict() const {
  StateDict out;
  out.set("optimizer", name_);
  out.set("groups", groups_.size());
  for (std::size_t g = 0; g < groups_.size(); ++g) {
    out.set(group_key(g, "params"), groups_[g].end - groups_[g].begin);
    out.set(group_key(g, "lr"), groups_[g].lr);
    out.set(group_key(g, "weight_decay"), groups_[g].weight_decay);
  }
  for (const Hyper& h : const_cast<Optimizer*>(this)->hyperparameters()) {
    if (h.number) out.set(std::string("hyper.") + h.name, *h.number);
    if (h.flag) out.set(std::string("hyper.") + h.name, *h.flag);
  }
  NoGradGuard no_grad;
  for (std::size_t i = 0; i < state_.size(); ++i) {
    out.set(param_key(i, "step"), state_[i].step);
    for (std::size_t b = 0; b < buffer_names_.size(); ++b)
      if (state_[i].buffers[b].defined()) out.set(param_key(i, buffer_names_[b]), state_[i].buffers[b].clone());
  }
  return out;
}

void Optimizer::check_state_dict(const StateDict& state) const {
  const char* op = name_;
  const std::string kind = state.string("optimizer", op);
  LADON_CHECK(kind == name_, op, "the state was saved by ", kind, ", this is ", name_);
  const std::int64_t groups = state.integer("groups", op);
  LADON_CHECK(groups == static_cast<std::int64_t>(groups_.size()), op, "the state has ", groups,
              " parameter groups, this optimizer has ", groups_.size());
  for (std::size_t g = 0; g < groups_.size(); ++g) {
    const std::int64_t n = state.integer(group_key(g, "params"), op);
    const std::size_t have = groups_[g].end - groups_[g].begin;
    LADON_CHECK(n == static_cast<std::int64_t>(have), op, "group ", g, " has ", n, " parameters in the state, ", have,
                " in this optimizer");
    const double lr = state.number(group_key(g, "lr"), op);
    LADON_CHECK(finite_nonnegative(lr), op, "group ", g, ": lr must be finite and >= 0, got ", lr, " in the state");
    const double wd = state.number(group_key(g, "weight_decay"), op);
    LADON_CHECK(finite_nonnegative(wd), op, "group ", g, ": weight_decay must be finite and >= 0, got ", wd,
                " in the state");
  }
  // The saved hyperparameters are validated by the optimizer's own rules: tried in place, then
  // restored, so that load_checkpoint can reject a bad file before it changes anything.
  std::vector<Hyper> hypers = const_cast<Optimizer*>(this)->hyperparameters();
  std::vector<double> old_numbers(hypers.size());
  std::vector<bool> old_flags(hypers.size());
  for (std::size_t k = 0; k < hypers.size(); ++k) {
    if (hypers[k].number) old_numbers[k] = *hypers[k].number;
    if (hypers[k].flag) old_flags[k] = *hypers[k].flag;
  }
  const auto restore = [&] {
    for (std::size_t k = 0; k < hypers.size(); ++k) {
      if (hypers[k].number) *hypers[k].number = old_numbers[k];
      if (hypers[k].flag) *hypers[k].flag = old_flags[k];
    }
  };
  try {
    for (const Hyper& h : hypers) {
      const std::string key = std::string("hyper.") + h.name;
      if (h.number) *h.number = state.number(key, op);
      if (h.flag) *h.flag = state.integer(key, op) != 0;
    }
    validate_hyperparameters();
  } catch (...) {
    restore();
    throw;
  }
  restore();
  // Every per-parameter entry must name a known parameter and buffer, with the parameter's shape.
  for (const auto& [key, value] : state.items()) {
    if (key.rfind("param.", 0) != 0) continue;
    const std::size_t dot = key.find('.', 6);
    std::size_t i = 0;
    bool ok = dot != std::string::npos && dot > 6;
    if (ok) {
      try {
        std::size_t used = 0;
        i = std::stoul(key.substr(6, dot - 6), &used);
        ok = used == dot - 6;
      } catch (const std::exception&) {
        ok = false;
      }
    }
    LADON_CHECK(ok, op, "malformed state entry '", key, "'");
    LADON_CHECK(i < params_.size(), op, "state entry '", key, "' is for parameter ", i, ", but this optimizer has ",
                params_.size(), " parameters");
    const std::string what = key.substr(dot + 1);
    if (what == "step") {
      const std::int64_t step = state.integer(key, op);
      LADON_CHECK(step >= 0, op, "state entry '", key, "' is negative: ", step);
      continue;
    }
    bool known = false;
    for (const std::string& b : buffer_names_) known = known || b == what;
    LADON_CHECK(known, op, "state entry '", key, "': ", name_, " has no buffer '", what, "'");
    const Tensor& t = state.tensor(key, op);
    LADON_CHECK(t.defined() && t.dtype() == Dtype::float32, op, "state entry '", key, "' must be a float32 tensor");
    LADON_CHECK(t.shape() == params_[i].shape(), op, "state entry '", key, "' has shape ", shape_str(t.shape()),
                ", but parameter ", i, " has shape ", shape_str(params_[i].shape()));
  }
}

void Optimizer::load_state_dict(const StateDict& state) {
  check_state_dict(state);  // validates the hyperparameters too: nothing below can fail
  for (const Hyper& h : hyperparameters()) {
    const std::string key = std::string("hyper.") + h.name;
    if (h.number) *h.number = state.number(key, name_);
    if (h.flag) *h.flag = state.integer(key, name_) != 0;
  }
  for (std::size_t g = 0; g < groups_.size(); ++g) {
    groups_[g].lr = state.number(group_key(g, "lr"), name_);
    groups_[g].weight_decay = state.number(group_key(g, "weight_decay"), name_);
  }
  NoGradGuard no_grad;
  for (std::size_t i = 0; i < state_.size(); ++i) {
    const StateValue* step = state.find(param_key(i, "step"));
    state_[i].step = step ? std::get<std::int64_t>(*step) : 0;
    for (std::size_t b = 0; b < buffer_names_.size(); ++b) {
      const StateValue* v = state.find(param_key(i, buffer_names_[b]));
      // Own copies: the optimizer updates its buffers in place.
      state_[i].buffers[b] = v ? std::get<Tensor>(*v).contiguous().clone() : Tensor();
    }
  }
}

// ---- SGD ----------------------------------------------------------------------------------------

SGD::SGD(std::vector<Tensor> params, SGDOptions options) : SGD(one_group(std::move(params)), options) {}

SGD::SGD(std::vector<ParamGroup> groups, SGDOptions options)
    : Optimizer(std::move(groups), options.lr, options.weight_decay, {"momentum_buffer"}, "SGD"), options_(options) {
  validate_hyperparameters();
}

std::vector<Optimizer::Hyper> SGD::hyperparameters() {
  return {
      {"momentum", &options_.momentum}, {"dampening", &options_.dampening}, {"nesterov", nullptr, &options_.nesterov}};
}

void SGD::validate_hyperparameters() const {
  const SGDOptions& o = options_;
  LADON_CHECK(finite_nonnegative(o.momentum), "SGD", "momentum must be finite and >= 0, got ", o.momentum);
  LADON_CHECK(o.dampening >= 0.0 && o.dampening <= 1.0, "SGD", "dampening must be in [0, 1], got ", o.dampening);
  LADON_CHECK(!o.nesterov || (o.momentum > 0.0 && o.dampening == 0.0), "SGD",
              "nesterov needs momentum > 0 and dampening = 0, got momentum = ", o.momentum,
              ", dampening = ", o.dampening);
}

SGDOptions SGD::options(std::size_t group) const { return group_options(options_, group); }

void SGD::update_rows(const RowUpdate& u) {
  LADON_CHECK(options_.momentum == 0.0, name_, "parameter ", u.index,
              " has a row-sparse gradient; it needs momentum 0, got ", options_.momentum);
  kernels::sgd_update_rows(u.n, u.rows, u.dim, u.param, u.grad, static_cast<float>(u.lr));
}

void SGD::update(const Update& u) {
  float* buf = nullptr;
  bool first_step = false;
  if (options_.momentum != 0.0) {
    Tensor& b = state(u.index).buffers[0];
    first_step = !b.defined();
    if (first_step) b = empty(params()[u.index].shape());  // the first step writes it whole: buf = g
    buf = b.data<float>();
  }
  split_update(u.numel, [&](std::int64_t b, std::int64_t e) {
    kernels::sgd_update(e - b, u.param + b, u.grad + b, buf ? buf + b : nullptr, static_cast<float>(u.lr),
                        static_cast<float>(options_.momentum), static_cast<float>(options_.dampening),
                        static_cast<float>(u.weight_decay), options_.nesterov, first_step);
  });
}

// ---- Adam and AdamW -----------------------------------------------------------------------------

Adam::Adam(std::vector<Tensor> params, AdamOptions options) : Adam(one_group(std::move(params)), options) {}

Adam::Adam(std::vector<ParamGroup> groups, AdamOptions options) : Adam(std::move(groups), options, false, "Adam") {}

Adam::Adam(std::vector<ParamGroup> groups, AdamOptions options, bool decoupled, const char* name)
    : Optimizer(std::move(groups), options.lr, options.weight_decay, {"exp_avg", "exp_avg_sq"}, name),
      options_(options),
      decoupled_(decoupled) {
  validate_hyperparameters();
}

std::vector<Optimizer::Hyper> Adam::hyperparameters() {
  return {{"beta1", &options_.beta1}, {"beta2", &options_.beta2}, {"eps", &options_.eps}};
}

void Adam::validate_hyperparameters() const {
  const AdamOptions& o = options_;
  LADON_CHECK(o.beta1 >= 0.0 && o.beta1 < 1.0, name_, "beta1 must be in [0, 1), got ", o.beta1);
  LADON_CHECK(o.beta2 >= 0.0 && o.beta2 < 1.0, name_, "beta2 must be in [0, 1), got ", o.beta2);
  LADON_CHECK(finite_nonnegative(o.eps), name_, "eps must be finite and >= 0, got ", o.eps);
}

AdamOptions Adam::options(std::size_t group) const { return group_options(options_, group); }

void Adam::update(const Update& u) {
  float* m = buffer(u.index, 0).data<float>();
  float* v = buffer(u.index, 1).data<float>();
  split_update(u.numel, [&](std::int64_t b, std::int64_t e) {
    kernels::adam_update(e - b, u.param + b, u.grad + b, m + b, v + b, static_cast<float>(u.lr),
                         static_cast<float>(options_.beta1), static_cast<float>(options_.beta2),
                         static_cast<float>(options_.eps), static_cast<float>(u.weight_decay), decoupled_, u.step);
  });
}

void Adam::update_rows(const RowUpdate& u) {
  kernels::adam_update_rows(u.n, u.rows, u.dim, u.param, u.grad, buffer(u.index, 0).data<float>(),
                            buffer(u.index, 1).data<float>(), static_cast<float>(u.lr),
                            static_cast<float>(options_.beta1), static_cast<float>(options_.beta2),
                            static_cast<float>(options_.eps), u.step);
}

namespace {
AdamOptions as_adam(const AdamWOptions& o) {
  return {.lr = o.lr, .beta1 = o.beta1, .beta2 = o.beta2, .eps = o.eps, .weight_decay = o.weight_decay};
}
}  // namespace

AdamW::AdamW(std::vector<Tensor> params, AdamWOptions options) : AdamW(one_group(std::move(params)), options) {}

AdamW::AdamW(std::vector<ParamGroup> groups, AdamWOptions options)
    : Adam(std::move(groups), as_adam(options), true, "AdamW") {}

// ---- RMSprop ------------------------------------------------------------------------------------

RMSprop::RMSprop(std::vector<Tensor> params, RMSpropOptions options) : RMSprop(one_group(std::move(params)), options) {}

RMSprop::RMSprop(std::vector<ParamGroup> groups, RMSpropOptions options)
    : Optimizer(std::move(groups), options.lr, options.weight_decay, {"square_avg", "momentum_buffer", "grad_avg"},
                "RMSprop"),
      options_(options) {
  validate_hyperparameters();
}

std::vector<Optimizer::Hyper> RMSprop::hyperparameters() {
  return {{"alpha", &options_.alpha},
          {"eps", &options_.eps},
          {"momentum", &options_.momentum},
          {"centered", nullptr, &options_.centered}};
}

void RMSprop::validate_hyperparameters() const {
  const RMSpropOptions& o = options_;
  LADON_CHECK(o.alpha >= 0.0 && o.alpha <= 1.0, name_, "alpha must be in [0, 1], got ", o.alpha);
  LADON_CHECK(finite_nonnegative(o.eps), name_, "eps must be finite and >= 0, got ", o.eps);
  LADON_CHECK(finite_nonnegative(o.momentum), name_, "momentum must be finite and >= 0, got ", o.momentum);
}

RMSpropOptions RMSprop::options(std::size_t group) const { return group_options(options_, group); }

void RMSprop::update(const Update& u) {
  float* square_avg = buffer(u.index, 0).data<float>();
  float* momentum_buffer = options_.momentum > 0.0 ? buffer(u.index, 1).data<float>() : nullptr;
  float* grad_avg = options_.centered ? buffer(u.index, 2).data<float>() : nullptr;
  split_update(u.numel, [&](std::int64_t b, std::int64_t e) {
    kernels::rmsprop_update(e - b, u.param + b, u.grad + b, square_avg + b, grad_avg ? grad_avg + b : nullptr,
                            momentum_buffer ? momentum_buffer + b : nullptr, static_cast<float>(u.lr),
                            static_cast<float>(options_.alpha), static_cast<float>(options_.eps),
                            static_cast<float>(u.weight_decay), static_cast<float>(options_.momentum));
  });
}

// ---- Adagrad ------------------------------------------------------------------------------------

Adagrad::Adagrad(std::vector<Tensor> params, AdagradOptions options) : Adagrad(one_group(std::move(params)), options) {}

Adagrad::Adagrad(std::vector<ParamGroup> groups, AdagradOptions options)
    : Optimizer(std::move(groups), options.lr, options.weight_decay, {"sum"}, "Adagrad"), options_(options) {
  validate_hyperparameters();
}

std::vector<Optimizer::Hyper> Adagrad::hyperparameters() {
  return {{"lr_decay", &options_.lr_decay},
          {"initial_accumulator_value", &options_.initial_accumulator_value},
          {"eps", &options_.eps}};
}

void Adagrad::validate_hyperparameters() const {
  const AdagradOptions& o = options_;
  LADON_CHECK(finite_nonnegative(o.lr_decay), name_, "lr_decay must be finite and >= 0, got ", o.lr_decay);
  LADON_CHECK(finite_nonnegative(o.initial_accumulator_value), name_,
              "initial_accumulator_value must be finite and >= 0, got ", o.initial_accumulator_value);
  LADON_CHECK(finite_nonnegative(o.eps), name_, "eps must be finite and >= 0, got ", o.eps);
}

AdagradOptions Adagrad::options(std::size_t group) const { return group_options(options_, group); }

namespace {
// PyTorch's decayed learning rate at a parameter's step t (from 1).
double adagrad_lr(double lr, double lr_decay, std::int64_t step) {
  return lr / (1.0 + static_cast<double>(step - 1) * lr_decay);
}
}  // namespace

void Adagrad::update(const Update& u) {
  float* sum = buffer(u.index, 0).data<float>();
  const auto lr = static_cast<float>(adagrad_lr(u.lr, options_.lr_decay, u.step));
  split_update(u.numel, [&](std::int64_t b, std::int64_t e) {
    kernels::adagrad_update(e - b, u.param + b, u.grad + b, sum + b, lr, static_cast<float>(options_.eps),
                            static_cast<float>(u.weight_decay));
  });
}

void Adagrad::update_rows(const RowUpdate& u) {
  kernels::adagrad_update_rows(u.n, u.rows, u.dim, u.param, u.grad, buffer(u.index, 0).data<float>(),
                               static_cast<float>(adagrad_lr(u.lr, options_.lr_decay, u.step)),
                               static_cast<float>(options_.eps));
}

}  // namespace ladon::nn
