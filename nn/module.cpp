#include "module.h"

#include <functional>

#include "activation.h"
#include "conv.h"
#include "linear.h"
#include "pool.h"

namespace ladon::nn {

namespace {

// Walks a module tree depth-first, calling back with dotted names.
class Walker : public Module::Visitor {
 public:
  std::function<void(const std::string&, Tensor&)> on_parameter;
  std::function<void(const std::string&, Tensor&)> on_buffer;
  std::function<void(const std::string&, Generator&)> on_generator;
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
  void generator(const std::string& name, Generator& gen) override {
    if (on_generator) on_generator(prefix_ + name, gen);
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

std::vector<std::pair<std::string, Generator*>> Module::named_generators() {
  std::vector<std::pair<std::string, Generator*>> out;
  Walker w;
  w.on_generator = [&](const std::string& name, Generator& g) { out.emplace_back(name, &g); };
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
    // stored: same result, one pass over the output instead of three. Conv2d (then ReLU) then
    // MaxPool2d(2) runs as one op that pools each image's output while it is in cache.
    const bool relu_next = i + 1 < layers_.size() && dynamic_cast<ReLU*>(layers_[i + 1].get());
    const std::size_t pool_at = relu_next ? i + 2 : i + 1;
    auto* pool = pool_at < layers_.size() ? dynamic_cast<MaxPool2d*>(layers_[pool_at].get()) : nullptr;
    if (auto* conv = dynamic_cast<Conv2d*>(layers_[i].get()); conv && pool && pool->is_2x2()) {
      h = conv->forward_max_pool2x2(h, relu_next ? Activation::relu : Activation::none);
      i = pool_at;
      continue;
    }
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
