#include "autograd.h"

#include <atomic>
#include <unordered_map>

#include "ops.h"

namespace ladon {
namespace {
thread_local bool g_grad_enabled = true;
thread_local GradReadyHook* g_grad_ready_hook = nullptr;
}  // namespace

GradReadyHook::GradReadyHook(std::function<void(TensorImpl*)> on_ready)
    : on_ready_(std::move(on_ready)), previous_(g_grad_ready_hook) {
  g_grad_ready_hook = this;
}
GradReadyHook::~GradReadyHook() { g_grad_ready_hook = previous_; }

struct GradReadyHookAccess {
  static void call(TensorImpl* leaf) { g_grad_ready_hook->on_ready_(leaf); }
};

bool grad_enabled() { return g_grad_enabled; }
NoGradGuard::NoGradGuard() : previous_(g_grad_enabled) { g_grad_enabled = false; }
NoGradGuard::~NoGradGuard() { g_grad_enabled = previous_; }

Node::Node(const char* name, std::vector<Tensor> inputs, BackwardFn backward)
    : name_(name), backward_(std::move(backward)) {
  edges_.reserve(inputs.size());
  needs_grad_.reserve(inputs.size());
  for (const Tensor& input : inputs) {
    Edge edge;
    if (input.defined() && input.requires_grad()) {
      if (input.grad_fn())
        edge.node = input.grad_fn();
      else
        edge.leaf = input.impl();
      edge.shape = input.shape();
    }
    needs_grad_.push_back(edge.node || edge.leaf);
    edges_.push_back(std::move(edge));
  }
}

Node::~Node() {
  // Take over the producers this node keeps alive; any that would die with it hand their own
  // producers over first, so destruction is a loop instead of a recursion down the chain.
  std::vector<std::shared_ptr<Node>> pending;
  for (Edge& edge : edges_)
    if (edge.node) pending.push_back(std::move(edge.node));
  while (!pending.empty()) {
    std::shared_ptr<Node> node = std::move(pending.back());
    pending.pop_back();
    if (node.use_count() == 1)
      for (Edge& edge : node->edges_)
        if (edge.node) pending.push_back(std::move(edge.node));
  }
}

Grads Node::apply(const Tensor& grad, const std::vector<bool>& needs) {
  LADON_CHECK(backward_ != nullptr, "backward",
              "trying to backward through the graph a second time (through '", name_,
              "'); its saved tensors were freed after the first backward. Pass retain_graph = true to the "
              "first backward if you need to backward twice");
  Grads grads = backward_(grad, needs);
  grads.resize(edges_.size());
  return grads;
}

bool any_requires_grad(const std::vector<Tensor>& inputs) {
  for (const Tensor& t : inputs)
    if (t.defined() && t.requires_grad()) return true;
  return false;
}

Tensor record(Tensor output, const char* op, std::vector<Tensor> inputs, BackwardFn backward) {
  if (!g_grad_enabled || !any_requires_grad(inputs)) return output;
  output.impl()->grad_fn = std::make_shared<Node>(op, std::move(inputs), std::move(backward));
  output.impl()->requires_grad = true;
  return output;
}

namespace {

Tensor accumulate(const Tensor& existing, const Tensor& incoming) {
  return existing.defined() ? add(existing, incoming) : incoming;
}

// Where the engine delivers the gradients it computes. With captures (grad()), only the nodes on a
// path to a captured tensor run and no .grad() is touched; without (backward()), every node runs
// and every leaf that requires grad accumulates into its .grad().
struct Capture {
  Tensor grad;
  bool reached = false;  // some path leads to it from an output
};
struct Sinks {
  std::unordered_map<TensorImpl*, Capture>* leaf_captures = nullptr;
  std::unordered_map<Node*, Capture>* node_captures = nullptr;
  bool report_ready = false;  // call the GradReadyHook as each leaf's .grad() becomes final
  bool captures_only() const { return leaf_captures != nullptr; }
  Capture* leaf(TensorImpl* leaf) const {
    if (!leaf_captures) return nullptr;
    auto it = leaf_captures->find(leaf);
    return it == leaf_captures->end() ? nullptr : &it->second;
  }
  Capture* node(Node* node) const {
    if (!node_captures) return nullptr;
    auto it = node_captures->find(node);
    return it == node_captures->end() ? nullptr : &it->second;
  }
};

// Runs after the graph is analysed and before any backward runs (grad() checks allow_unused there,
// so an error leaves the graph intact).
using BeforeRun = std::function<void()>;

void run_backward(const std::vector<Tensor>& roots, const std::vector<Tensor>& seeds, bool retain_graph,
                  const Sinks& sinks, const BeforeRun& before_run = {}) {
  NoGradGuard no_grad;
  // Each pass has its own number; a node's state belongs to this pass once stamped with it, so state
  // left behind by an earlier pass (even one cut short by an exception) is never read.
  static std::atomic<std::uint64_t> passes{0};
  const std::uint64_t pass = ++passes;
  const bool prune = sinks.captures_only();
  const auto state = [pass](Node* node, bool& first_visit) -> Node::BackwardState& {
    Node::BackwardState& s = node->backward_state();
    first_visit = s.pass != pass;
    if (first_visit) {
      s.pass = pass;
      s.dependencies = 0;
      s.pending = Tensor();
      s.reached = s.executes = false;  // needed_inputs keeps its capacity: no allocation per pass
    }
    return s;
  };
  bool first = false;

  // 1. A depth-first walk (explicit stack) from the roots counts, for every reachable node, how
  // many edges lead into it. With captures it also decides, in post-order (a node's producers
  // finish before it), which of its inputs lead to a captured tensor: the mask its backward gets.
  // Every consumer of a reached node runs, so the counts of reached nodes stay exact.
  struct Frame {
    Node* node;
    std::size_t next_edge;
  };
  std::vector<Frame> stack;
  // With a GradReadyHook, also count how many edges lead into each leaf: its .grad() is final when
  // the last one has delivered (a leaf root counts once more, for its seed).
  std::unordered_map<TensorImpl*, int> leaf_pending;
  if (sinks.report_ready)
    for (const Tensor& root : roots)
      if (!root.grad_fn()) leaf_pending[root.impl().get()]++;
  for (const Tensor& root : roots) {
    Node* node = root.grad_fn().get();
    if (!node) continue;
    state(node, first);
    if (!first) continue;
    stack.push_back({node, 0});
    while (!stack.empty()) {
      Frame& frame = stack.back();
      const auto& edges = frame.node->edges();
      if (frame.next_edge < edges.size()) {
        const Node::Edge& edge = edges[frame.next_edge++];
        if (sinks.report_ready && edge.leaf) leaf_pending[edge.leaf.get()]++;
        Node* next = edge.node.get();
        if (!next) continue;
        state(next, first).dependencies++;
        if (first) stack.push_back({next, 0});  // invalidates frame
        continue;
      }
      Node* done = frame.node;
      stack.pop_back();
      if (!prune) continue;
      Node::BackwardState& s = done->backward_state();
      s.needed_inputs.assign(edges.size(), false);
      for (std::size_t i = 0; i < edges.size(); ++i) {
        const Node::Edge& edge = edges[i];
        if (edge.node) {
          s.needed_inputs[i] = edge.node->backward_state().reached;
        } else if (Capture* c = edge.leaf ? sinks.leaf(edge.leaf.get()) : nullptr) {
          c->reached = true;
          s.needed_inputs[i] = true;
        }
        s.executes = s.executes || s.needed_inputs[i];
      }
      Capture* c = sinks.node(done);
      if (c) c->reached = true;
      s.reached = s.executes || c;
    }
  }
  const auto reached = [prune](Node* node) { return !prune || node->backward_state().reached; };

  // 2. Seed the roots; a leaf root receives its seed directly.
  auto deliver_to_leaf = [&](TensorImpl* leaf, const Tensor& g) {
    if (prune) {
      if (Capture* c = sinks.leaf(leaf)) c->grad = accumulate(c->grad, g);
      return;
    }
    if (leaf->grad.defined()) {
      leaf->grad = add(leaf->grad, g);
    } else {
      // A gradient nobody else holds becomes .grad() as it is; anything shared (the same tensor
      // routed to two inputs, a view of live data, the user's seed) is copied, so later in-place
      // updates of .grad() cannot leak into another tensor.
      const bool exclusive = g.is_contiguous() && g.impl().use_count() == 1 && g.impl()->storage.use_count() == 1;
      leaf->grad = exclusive ? g : g.clone();
    }
  };
  auto leaf_done = [&](TensorImpl* leaf) {
    if (sinks.report_ready && --leaf_pending[leaf] == 0) GradReadyHookAccess::call(leaf);
  };
  for (std::size_t i = 0; i < roots.size(); ++i) {
    if (Node* node = roots[i].grad_fn().get()) {
      if (!reached(node)) continue;
      Tensor& pending = node->backward_state().pending;
      pending = accumulate(pending, seeds[i]);
    } else {
      if (Capture* c = sinks.leaf(roots[i].impl().get())) c->reached = true;
      deliver_to_leaf(roots[i].impl().get(), seeds[i]);
      leaf_done(roots[i].impl().get());
    }
  }
  if (before_run) before_run();

  // 3. Run nodes whose every consumer has run (Kahn's algorithm), in reverse topological order.
  std::vector<Node*> ready;
  for (const Tensor& root : roots) {
    Node* node = root.grad_fn().get();
    if (node && reached(node) && node->backward_state().dependencies == 0) {
      node->backward_state().dependencies = -1;  // queued
      ready.push_back(node);
    }
  }
  while (!ready.empty()) {
    Node* node = ready.back();
    ready.pop_back();
    Node::BackwardState& s = node->backward_state();
    Tensor grad = std::move(s.pending);
    s.pending = Tensor();
    if (Capture* c = sinks.node(node)) c->grad = accumulate(c->grad, grad);
    if (prune && !s.executes) continue;  // a captured tensor nothing further upstream is asked of
    const std::vector<bool>& needs = prune ? s.needed_inputs : node->needs_grad();
    Grads grads = node->apply(grad, needs);
    // Our handle on the incoming gradient goes now: a backward that returns it or a view of it
    // (reshape, transpose) then hands a leaf storage nobody else holds, which deliver_to_leaf
    // keeps instead of cloning (a transposed weight's whole gradient, every step).
    grad = Tensor();
    const auto& edges = node->edges();
    for (std::size_t i = 0; i < edges.size(); ++i) {
      const Node::Edge& edge = edges[i];
      if (!needs[i]) continue;
      const Tensor& g = grads[i];
      if (g.defined())
        LADON_CHECK(g.shape() == edge.shape, "backward", "internal error: '", node->name(), "' returned a ",
                    shape_str(g.shape()), " gradient for input ", i, " of shape ", shape_str(edge.shape));
      if (g.defined() && g.impl()->row_sparse) {
        // A row-sparse gradient stays sparse only on its way into a leaf's .grad().
        const RowGrad& rows = *g.impl()->row_sparse;
        if (edge.leaf && !prune) {
          if (edge.leaf->grad.defined())
            edge.leaf->grad = add(edge.leaf->grad, dense_from_rows(rows, edge.shape));
          else
            edge.leaf->row_grads.push_back(rows);
          continue;
        }
        const Tensor dense = dense_from_rows(rows, edge.shape);
        if (edge.leaf) {
          deliver_to_leaf(edge.leaf.get(), dense);
          continue;
        }
        Node::BackwardState& next_state = edge.node->backward_state();
        next_state.pending = accumulate(next_state.pending, dense);
        if (--next_state.dependencies == 0) ready.push_back(edge.node.get());
        continue;
      }
      if (edge.leaf) {
        if (g.defined()) deliver_to_leaf(edge.leaf.get(), g);
        leaf_done(edge.leaf.get());
        continue;
      }
      Node* next = edge.node.get();
      Node::BackwardState& next_state = next->backward_state();
      if (g.defined()) next_state.pending = accumulate(next_state.pending, g);
      if (--next_state.dependencies == 0) {
        if (!next_state.pending.defined()) next_state.pending = zeros(edge.shape);
        ready.push_back(next);
      }
    }
    if (!retain_graph) node->release();
  }
}

}  // namespace

void Tensor::backward(const Tensor& seed, bool retain_graph) const {
  LADON_CHECK(defined(), "backward", "called on an undefined tensor");
  LADON_CHECK(requires_grad(), "backward",
              "tensor of shape ", shape_str(shape()),
              " does not require grad: no input of the computation that produced it has requires_grad set "
              "(or it was computed under NoGradGuard)");
  Tensor s = seed;
  if (!s.defined()) {
    LADON_CHECK(numel() == 1, "backward", "a seed gradient is required for a non-scalar output of shape ",
                shape_str(shape()));
    s = ones(shape());
  }
  LADON_CHECK(s.shape() == shape(), "backward", "seed of shape ", shape_str(s.shape()),
              " does not match output of shape ", shape_str(shape()));
  run_backward({*this}, {s}, retain_graph, Sinks{.report_ready = g_grad_ready_hook != nullptr});
}

std::vector<Tensor> grad(const std::vector<Tensor>& outputs, const std::vector<Tensor>& inputs,
                         const GradOptions& options) {
  const std::vector<Tensor>& seeds = options.seeds;
  LADON_CHECK(seeds.empty() || seeds.size() == outputs.size(), "grad", outputs.size(), " outputs but ",
              seeds.size(), " seeds");
  std::vector<Tensor> roots, root_seeds;
  for (std::size_t i = 0; i < outputs.size(); ++i) {
    const Tensor& out = outputs[i];
    LADON_CHECK(out.defined(), "grad", "output ", i, " is undefined");
    LADON_CHECK(out.requires_grad(), "grad", "output ", i, " of shape ", shape_str(out.shape()),
                " does not require grad");
    Tensor s = seeds.empty() ? Tensor() : seeds[i];
    if (!s.defined()) {
      LADON_CHECK(out.numel() == 1, "grad", "a seed is required for non-scalar output ", i, " of shape ",
                  shape_str(out.shape()));
      s = ones(out.shape());
    }
    LADON_CHECK(s.shape() == out.shape(), "grad", "seed ", i, " of shape ", shape_str(s.shape()),
                " does not match output of shape ", shape_str(out.shape()));
    roots.push_back(out);
    root_seeds.push_back(s);
  }
  std::unordered_map<TensorImpl*, Capture> leaf_captures;
  std::unordered_map<Node*, Capture> node_captures;
  for (std::size_t i = 0; i < inputs.size(); ++i) {
    const Tensor& input = inputs[i];
    LADON_CHECK(input.defined(), "grad", "input ", i, " is undefined");
    LADON_CHECK(input.requires_grad(), "grad", "input ", i, " of shape ", shape_str(input.shape()),
                " does not require grad");
    if (input.grad_fn())
      node_captures.emplace(input.grad_fn().get(), Capture{});
    else
      leaf_captures.emplace(input.impl().get(), Capture{});
  }
  const auto capture = [&](const Tensor& input) -> Capture& {
    return input.grad_fn() ? node_captures[input.grad_fn().get()] : leaf_captures[input.impl().get()];
  };
  const auto check_reached = [&] {
    if (options.allow_unused) return;
    for (std::size_t i = 0; i < inputs.size(); ++i)
      LADON_CHECK(capture(inputs[i]).reached, "grad", "input ", i, " of shape ", shape_str(inputs[i].shape()),
                  " is not reached from the outputs (allow_unused = false)");
  };
  run_backward(roots, root_seeds, options.retain_graph, Sinks{&leaf_captures, &node_captures}, check_reached);
  std::vector<Tensor> result;
  for (const Tensor& input : inputs) {
    const Tensor& g = capture(input).grad;
    result.push_back(g.defined() ? g : zeros(input.shape()));
  }
  return result;
}

}  // namespace ladon
