#include "data_parallel.h"

#include <algorithm>
#include <chrono>
#include <unordered_set>

#include "../core/autograd.h"
#include "../core/error.h"
#include "expert_parallel.h"
#include "ops.h"

namespace ladon::dist {

namespace {
double now_seconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}
}  // namespace

DataParallel::DataParallel(nn::Module& model, Communicator& comm, DataParallelOptions options)
    : comm_(comm.handle()),
      local_(rank_local_parameters(model)),
      bucket_bytes_(options.bucket_mb * 1024 * 1024),
      first_bucket_bytes_(std::min(options.first_bucket_mb, options.bucket_mb) * 1024 * 1024),
      model_(model) {
  LADON_CHECK(options.bucket_mb > 0, "DataParallel", "bucket_mb must be positive, got ", options.bucket_mb);
  LADON_CHECK(options.first_bucket_mb > 0, "DataParallel", "first_bucket_mb must be positive, got ",
              options.first_bucket_mb);
  {
    std::unordered_set<TensorImpl*> local;
    for (const Tensor& p : local_) local.insert(p.impl().get());
    for (const Tensor& p : model.parameters())
      if (!local.count(p.impl().get())) params_.push_back(p);
  }
  for (std::size_t i = 0; i < params_.size(); ++i) {
    LADON_CHECK(params_[i].dtype() == Dtype::float32, "DataParallel", "parameter ", i, " is not float32");
    LADON_CHECK(index_.emplace(params_[i].impl().get(), i).second, "DataParallel", "parameter ", i,
                " appears twice in the model's parameters");
  }
  // Reverse parameter order: roughly the order backward makes the gradients final, until the
  // first synchronised backward shows the real one (rebuild_buckets).
  std::vector<std::size_t> order(params_.size());
  for (std::size_t k = 0; k < order.size(); ++k) order[k] = order.size() - 1 - k;
  layout_buckets(order);
  if (options.sync_batch_norm) {
    sync_statistics_ = std::make_unique<SyncStatistics>(comm.handle());
    // Every BatchNorm anywhere in the model, through the modules' own visit() lists.
    struct Finder : nn::Module::Visitor {
      std::vector<nn::BatchNorm*>& found;
      explicit Finder(std::vector<nn::BatchNorm*>& f) : found(f) {}
      void operator()(const std::string&, Tensor&) override {}
      void buffer(const std::string&, Tensor&) override {}
      void operator()(const std::string&, nn::Module& child) override {
        if (auto* bn = dynamic_cast<nn::BatchNorm*>(&child)) found.push_back(bn);
        child.visit(*this);
      }
    } finder(synced_);
    finder("", model);
    for (nn::BatchNorm* bn : synced_) bn->set_statistics(sync_statistics_.get());
  }
  if (options.broadcast) broadcast_state();
}

void DataParallel::layout_buckets(const std::vector<std::size_t>& order) {
  buckets_.clear();
  bucket_index_.assign(params_.size(), 0);
  double bytes = 0;
  for (std::size_t k : order) {
    const double size = static_cast<double>(params_[k].numel()) * sizeof(float);
    const double cap = buckets_.size() <= 1 ? first_bucket_bytes_ : bucket_bytes_;
    if (buckets_.empty() || (bytes > 0 && bytes + size > cap)) {
      buckets_.emplace_back();
      bytes = 0;
    }
    buckets_.back().params.push_back(k);
    bucket_index_[k] = buckets_.size() - 1;
    bytes += size;
  }
  for (Bucket& b : buckets_) {
    b.flags.assign(b.params.size(), 0.0f);
    b.grads.assign(b.params.size(), Tensor());
  }
}

void DataParallel::rebuild_buckets() {
  // Rank 0's order, so that every rank has the same buckets (a rank's pass may reach other
  // parameters, or report them in another order); parameters never reported go last.
  std::vector<std::int64_t> order;
  std::vector<bool> seen(params_.size(), false);
  for (std::size_t k : ready_order_)
    if (!seen[k]) {
      seen[k] = true;
      order.push_back(static_cast<std::int64_t>(k));
    }
  for (std::size_t k = params_.size(); k-- > 0;)
    if (!seen[k]) order.push_back(static_cast<std::int64_t>(k));
  comm_.broadcast(order, 0);
  layout_buckets(std::vector<std::size_t>(order.begin(), order.end()));
  ready_order_.clear();
  ready_order_.shrink_to_fit();
  rebuilt_ = true;
}

DataParallel::~DataParallel() {
  for (nn::BatchNorm* bn : synced_) bn->set_statistics(nullptr);
}

Tensor DataParallel::SyncStatistics::sum(const Tensor& x) { return all_reduce_sum(x, comm); }

std::vector<std::size_t> DataParallel::bucket_of_parameters() const { return bucket_index_; }

void DataParallel::broadcast_state() {
  NoGradGuard no_grad;
  for (Tensor& p : params_) {
    LADON_CHECK(p.is_contiguous(), "DataParallel", "parameters must be contiguous to broadcast");
    comm_.broadcast(std::span<float>(p.data<float>(), static_cast<std::size_t>(p.numel())), 0);
  }
  for (auto& [name, b] : model_.named_buffers()) {
    LADON_CHECK(b.is_contiguous(), "DataParallel", "buffer ", name, " must be contiguous to broadcast");
    if (b.dtype() == Dtype::float32)
      comm_.broadcast(std::span<float>(b.data<float>(), static_cast<std::size_t>(b.numel())), 0);
    else
      comm_.broadcast(std::span<std::int64_t>(b.data<std::int64_t>(), static_cast<std::size_t>(b.numel())), 0);
  }
}

void DataParallel::begin_pass() {
  for (Bucket& b : buckets_) {
    b.pending = b.params.size();
    b.started = false;
  }
  next_bucket_ = 0;
}

void DataParallel::mark_unreached(const Tensor& loss) {
  // The leaves of loss's graph, by the same edges backward will follow.
  std::unordered_set<TensorImpl*> leaves;
  std::unordered_set<Node*> seen;
  std::vector<Node*> stack;
  if (loss.grad_fn())
    stack.push_back(loss.grad_fn().get());
  else
    leaves.insert(loss.impl().get());
  while (!stack.empty()) {
    Node* node = stack.back();
    stack.pop_back();
    if (!seen.insert(node).second) continue;
    for (const Node::Edge& edge : node->edges()) {
      if (edge.leaf) leaves.insert(edge.leaf.get());
      if (edge.node) stack.push_back(edge.node.get());
    }
  }
  for (const Tensor& p : params_)
    if (!leaves.count(p.impl().get())) on_ready(p.impl().get());
}

void DataParallel::start(Bucket& b) {
  // The ring sums the gradients where they lie (the engine gives each leaf an exclusive, final
  // .grad()), and one defined-flag per parameter after them; a rank with no gradient for a
  // parameter sends zeros, in a buffer it holds until finish_pass.
  std::vector<std::span<float>> segments;
  for (std::size_t j = 0; j < b.params.size(); ++j) {
    const Tensor& p = params_[b.params[j]];
    Tensor g = p.grad();
    b.flags[j] = g.defined() ? 1.0f : 0.0f;
    if (!g.defined()) {
      g = zeros(p.shape());
      p.set_grad(g);
    } else if (!g.is_contiguous() || g.shape() != p.shape()) {
      g = g.contiguous().reshape(p.shape()).clone();
      p.set_grad(g);
    }
    b.grads[j] = g;
    segments.emplace_back(g.data<float>(), static_cast<std::size_t>(g.numel()));
  }
  segments.emplace_back(b.flags);
  // The bucket's index tags its messages: several rings may be in flight at once. The owner of
  // each block divides it by the world size, so the ring leaves the average.
  b.ring.start(comm_.handle(), std::move(segments), static_cast<int>(&b - buckets_.data()),
               1.0f / static_cast<float>(comm_.size()));
  b.started = true;
}

void DataParallel::start_ready_buckets() {
  while (next_bucket_ < buckets_.size() && buckets_[next_bucket_].pending == 0) start(buckets_[next_bucket_++]);
}

void DataParallel::on_ready(TensorImpl* leaf) {
  auto it = index_.find(leaf);
  if (it == index_.end()) return;  // a leaf of the graph that is not one of the model's parameters
  if (!rebuilt_) ready_order_.push_back(it->second);
  Bucket& b = buckets_[bucket_index_[it->second]];
  if (b.pending > 0) --b.pending;
  start_ready_buckets();
  // MPI moves messages only inside MPI calls, and a ring posts its next step only when tested:
  // move on the ones in flight.
  for (std::size_t k = 0; k < next_bucket_; ++k) buckets_[k].ring.test();
}

void DataParallel::finish_pass() {
  // Buckets holding parameters this pass never reached start now, still in order.
  while (next_bucket_ < buckets_.size()) start(buckets_[next_bucket_++]);
  const float scale = 1.0f / static_cast<float>(comm_.size());
  NoGradGuard no_grad;
  for (Bucket& b : buckets_) {
    b.ring.wait();
    // A parameter no rank had a gradient for keeps none, as in a single process.
    for (std::size_t j = 0; j < b.params.size(); ++j)
      if (b.flags[j] == 0.0f) params_[b.params[j]].set_grad(Tensor());
    std::fill(b.grads.begin(), b.grads.end(), Tensor());
  }
  for (const Tensor& p : local_) {
    Tensor g = p.grad();
    if (!g.defined()) continue;
    if (!g.is_contiguous() || g.shape() != p.shape()) {
      g = g.contiguous().clone();
      p.set_grad(g);
    }
    float* dst = g.data<float>();
    for (std::int64_t i = 0; i < g.numel(); ++i) dst[i] *= scale;
  }
}

void DataParallel::backward(const Tensor& loss) {
  if (!sync_) {
    loss.backward();
    return;
  }
  const double t0 = now_seconds();
  begin_pass();
  std::size_t started = 0;
  {
    GradReadyHook hook([this](TensorImpl* leaf) { on_ready(leaf); });
    mark_unreached(loss);
    loss.backward();
    started = next_bucket_;
  }
  const double t1 = now_seconds();
  finish_pass();
  const double t2 = now_seconds();
  timing_ = {t2 - t0, t2 - t1, started};
  if (!rebuilt_) rebuild_buckets();
}

void DataParallel::synchronize() {
  const double t0 = now_seconds();
  begin_pass();
  finish_pass();
  const double t = now_seconds() - t0;
  timing_ = {t, t, 0};
}

}  // namespace ladon::dist
