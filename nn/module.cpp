#include "module.h"

#include <functional>

#include "activation.h"
#include "conv.h"
#include "linear.h"

namespace ladon::nn {

namespace {

// Walks a module tree depth-first, calling back with dotted names.
class Walker : public Module::Visitor {
 public:
  std::function<void(const std::string&, Tensor&)> on_parameter;
  std::function<void(const std::string&, Tensor&)> on_buffer;
  std::function<void(Module&)> on_module;

  void walk(Module& root) {
    if (on_module) on_module(root);
    root.visit(*this);
  }
  void operator()(const std::string& name, Tensor& parameter) override {
    if (on_parameter) on_parameter(prefix_ + name, parameter);
  }
  void buffer(const std::string& name, Tensor& value) override {
    if (on_buffer) on_buffer(prefix_ + name, value);
  }
  void operator()(const std::string& name, Module& child) override {
    const std::string saved = prefix_;
    prefix_ += name + ".";
    walk(child);
    prefix_ = saved;
  }

 private:
  std::string prefix_;
};

}  // namespace

std::vector<std::pair<std::string, Tensor>> Module::named_parameters() {
  std::vector<std::pair<std::string, Tensor>> out;
  Walker w;
  w.on_parameter = [&](const std::string& name, Tensor& t) { out.emplace_back(name, t); };
  w.walk(*this);
  return out;
}

std::vector<std::pair<std::string, Tensor>> Module::named_buffers() {
  std::vector<std::pair<std::string, Tensor>> out;
  Walker w;
  w.on_buffer = [&](const std::string& name, Tensor& t) { out.emplace_back(name, t); };
  w.walk(*this);
  return out;
}

std::vector<Tensor> Module::parameters() {
  std::vector<Tensor> out;
  for (auto& [name, t] : named_parameters()) out.push_back(t);
  return out;
}

std::int64_t Module::num_parameters() {
  std::int64_t n = 0;
  for (const Tensor& t : parameters()) n += t.numel();
  return n;
}

void Module::train(bool on) {
  Walker w;
  w.on_module = [on](Module& m) { m.training_ = on; };
  w.walk(*this);
}

void Module::zero_grad() {
  for (const Tensor& t : parameters()) t.zero_grad();
}

Tensor Sequential::forward(const Tensor& x) {
  Tensor h = x;
  for (std::size_t i = 0; i < layers_.size(); ++i) {
    // Linear or Conv2d then ReLU runs with the bias and ReLU applied as the GEMM's result is
    // stored: same result, one pass over the output instead of three.
    const bool relu_next = i + 1 < layers_.size() && dynamic_cast<ReLU*>(layers_[i + 1].get());
    if (auto* linear = dynamic_cast<Linear*>(layers_[i].get()); linear && relu_next) {
      h = linear->forward(h, Activation::relu);
      ++i;
      continue;
    }
    if (auto* conv = dynamic_cast<Conv2d*>(layers_[i].get()); conv && relu_next) {
      h = conv->forward(h, Activation::relu);
      ++i;
      continue;
    }
    h = layers_[i]->forward(h);
  }
  return h;
}

void Sequential::visit(Visitor& v) {
  for (std::size_t i = 0; i < layers_.size(); ++i) v(std::to_string(i), *layers_[i]);
}

}  // namespace ladon::nn
