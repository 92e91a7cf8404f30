// Activation layers: thin Module wrappers over the core ops, for use in Sequential.
#pragma once

#include "../core/ops.h"
#include "module.h"

namespace ladon::nn {

class ReLU : public Layer {
 public:
  Tensor forward(const Tensor& x) override { return relu(x); }
};
class Sigmoid : public Layer {
 public:
  Tensor forward(const Tensor& x) override { return sigmoid(x); }
};
class Tanh : public Layer {
 public:
  Tensor forward(const Tensor& x) override { return tanh(x); }
};
class GELU : public Layer {
 public:
  Tensor forward(const Tensor& x) override { return gelu(x); }
};

}  // namespace ladon::nn
