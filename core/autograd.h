// Reverse-mode autograd: every differentiable op records one Node holding only what its backward
// needs; backward() walks the graph once, iteratively, in reverse topological order.
#pragma once

#include "layer_fence.h"

#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "tensor.h"

namespace ladon {

// Gradients an op's backward returns: one per input, undefined where no gradient is needed.
using Grads = std::vector<Tensor>;
// The backward of one op: receives the gradient of its output and which inputs need a gradient.
using BackwardFn = std::function<Grads(const Tensor& grad, const std::vector<bool>& needs_grad)>;

class Node {
 public:
  Node(const char* name, std::vector<Tensor> inputs, BackwardFn backward);
  ~Node();  // unlinks the graph iteratively: freeing a long chain must not recurse once per node
  Node(const Node&) = delete;
  Node& operator=(const Node&) = delete;
  const char* name() const { return name_; }

  struct Edge {
    std::shared_ptr<Node> node;         // the producer of a non-leaf input
    std::shared_ptr<TensorImpl> leaf;   // or the leaf input that accumulates the gradient
    Shape shape;                        // the input's shape, to check what backward returns
  };
  const std::vector<Edge>& edges() const { return edges_; }
  const std::vector<bool>& needs_grad() const { return needs_grad_; }

  // Runs the backward for the inputs marked in needs (a subset of needs_grad()); throws if the
  // graph was freed.
  Grads apply(const Tensor& grad, const std::vector<bool>& needs);
  void release() { backward_ = nullptr; }  // frees saved tensors

  // Scratch of the backward pass that last reached this node (identified by `pass`): kept in the
  // node rather than in hash maps, so a backward allocates nothing per node for its bookkeeping.
  struct BackwardState {
    std::uint64_t pass = 0;
    int dependencies = 0;  // consumers not yet run; -1 once queued
    Tensor pending;        // the gradient summed so far
    // Only for grad(): which inputs lead to a requested gradient (the mask passed to the
    // backward), whether the node receives a gradient at all, and whether its backward runs.
    std::vector<bool> needed_inputs;
    bool reached = false;
    bool executes = false;
  };
  BackwardState& backward_state() { return state_; }

 private:
  const char* name_;
  std::vector<Edge> edges_;
  std::vector<bool> needs_grad_;
  BackwardFn backward_;
  BackwardState state_;
};

bool grad_enabled();

// Turns graph recording off for its lifetime (evaluation, optimizer steps).
class NoGradGuard {
 public:
  NoGradGuard();
  ~NoGradGuard();
  NoGradGuard(const NoGradGuard&) = delete;
  NoGradGuard& operator=(const NoGradGuard&) = delete;

 private:
  bool previous_;
};

// Attaches a backward to a freshly computed output when recording is on and an input needs a
// gradient; otherwise returns the output untouched. Ops call it right after their forward.
Tensor record(Tensor output, const char* op, std::vector<Tensor> inputs, BackwardFn backward);
bool any_requires_grad(const std::vector<Tensor>& inputs);

struct GradOptions {
  std::vector<Tensor> seeds = {};  // one per output (the output's shape), or none: ones for scalars
  bool retain_graph = false;       // keep the saved tensors of the nodes this call runs
  bool allow_unused = true;        // an input the outputs do not reach gets zeros; false: an Error
};

// Gradients of sum(outputs[i] * seeds[i]) with respect to inputs (leaves or intermediate
// tensors), without touching any .grad(). Only the nodes on a path from an output to an input
// run, each asked only for the gradients of its inputs that lead to a requested one (as
// PyTorch's engine does with exec_info): the gradient at a trunk's output costs the towers'
// backward, not the whole graph's.
std::vector<Tensor> grad(const std::vector<Tensor>& outputs, const std::vector<Tensor>& inputs,
                         const GradOptions& options = {});

}  // namespace ladon
