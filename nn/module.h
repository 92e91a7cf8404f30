// Module: the base of every layer and model. A module names its parameters, buffers and child
// modules in visit(); everything else (parameters(), named_parameters(), train/eval, zero_grad,
// state dicts) walks that one list. Nothing is registered at run time, so modules are ordinary
// values: declare them as members and move them freely. Copying a module shares its parameter
// tensors; modules that own children through pointers (Sequential) are move-only.
//
//   struct Net : nn::Module {
//     nn::Linear fc1{784, 256}, fc2{256, 10};
//     void visit(Visitor& v) override { v("fc1", fc1); v("fc2", fc2); }
//   };
#pragma once

#include "layer_fence.h"

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "../core/random.h"
#include "../core/tensor.h"

namespace ladon::nn {

class Module {
 public:
  virtual ~Module() = default;

  class Visitor {
   public:
    virtual ~Visitor() = default;
    virtual void operator()(const std::string& name, Tensor& parameter) = 0;
    virtual void operator()(const std::string& name, Module& child) = 0;
    // Buffers are state that is saved but not trained (running statistics).
    virtual void buffer(const std::string& name, Tensor& value) = 0;
    // A random stream the module draws from while training (dropout masks, routing noise): not
    // trained, but saved with the run so a resumed run draws the same numbers (nn::random_state).
    virtual void generator(const std::string& name, Generator& gen) {
      (void)name;
      (void)gen;
    }
  };
  // Lists this module's own parameters, buffers and direct children, in a fixed order.
  virtual void visit(Visitor&) {}

  std::vector<Tensor> parameters();
  std::vector<std::pair<std::string, Tensor>> named_parameters();  // dotted names: "tower.0.weight"
  std::vector<std::pair<std::string, Tensor>> named_buffers();
  std::vector<std::pair<std::string, Generator*>> named_generators();  // the module's random streams
  std::int64_t num_parameters();  // total element count of all parameters

  void train(bool on = true);  // recursive
  void eval() { train(false); }
  bool is_training() const { return training_; }
  void zero_grad();  // drops every parameter's gradient

 private:
  bool training_ = true;
};

// A module with one input and one output: what Sequential chains.
class Layer : public Module {
 public:
  virtual Tensor forward(const Tensor& x) = 0;
  Tensor operator()(const Tensor& x) { return forward(x); }
};

// Layers applied in order. Children are named "0", "1", ...
class Sequential : public Layer {
 public:
  Sequential() = default;
  template <typename... Layers>
  explicit Sequential(Layers&&... layers) {
    (push_back(std::forward<Layers>(layers)), ...);
  }
  Sequential(Sequential&&) = default;
  Sequential& operator=(Sequential&&) = default;

  template <typename L>
  std::decay_t<L>& push_back(L&& layer) {
    auto owned = std::make_unique<std::decay_t<L>>(std::forward<L>(layer));
    std::decay_t<L>& ref = *owned;
    layers_.push_back(std::move(owned));
    return ref;
  }
  void push_back(std::unique_ptr<Layer> layer) { layers_.push_back(std::move(layer)); }
  std::size_t size() const { return layers_.size(); }
  Layer& operator[](std::size_t i) {
    LADON_CHECK(i < layers_.size(), "Sequential", "index ", i, " is out of range for ", layers_.size(), " layers");
    return *layers_[i];
  }

  Tensor forward(const Tensor& x) override;
  void visit(Visitor& v) override;

 private:
  std::vector<std::unique_ptr<Layer>> layers_;
};

}  // namespace ladon::nn
