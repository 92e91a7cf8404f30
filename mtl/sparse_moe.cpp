#include "sparse_moe.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "../core/ops.h"
#include "model.h"

namespace ladon::mtl {

namespace {

constexpr const char* kOp = "SparseMoE";

// softplus(z) = max(z, 0) + log(1 + exp(-|z|)): no overflow for large |z|. At z = 0 (where the
// zero-initialised W_noise starts) maximum splits its gradient in half and |z| contributes none,
// which gives the true derivative 1/2.
Tensor softplus(const Tensor& z) { return maximum(z, scalar(0.0)) + log(1.0 + exp(-abs(z))); }

// CV² = population variance / mean², with Shazeer's epsilon so an all-zero vector gives 0.
Tensor cv_squared(const Tensor& v) {
  const Tensor m = mean(v);
  const Tensor d = v - m;
  return mean(d * d) / (m * m + 1e-10);
}

Tensor int_tensor(std::vector<std::int64_t> values) {
  const auto n = static_cast<std::int64_t>(values.size());
  return tensor(std::move(values), {n});
}

}  // namespace

SparseMoE::SparseMoE(const SparseMoEOptions& options, Generator& gen) : options_(options), noise_gen_(options.seed) {
  SparseMoEOptions& o = options_;
  if (o.out == 0) o.out = o.in;
  LADON_CHECK(o.in > 0 && o.out > 0, kOp, "needs in > 0 and out >= 0, got in=", o.in, " out=", options.out);
  LADON_CHECK(o.experts > 0, kOp, "needs at least one expert, got experts=", o.experts);
  LADON_CHECK(o.k >= 1, kOp, "k must be at least 1, got ", o.k);
  LADON_CHECK(o.k <= o.experts, kOp, "k = ", o.k, " exceeds the ", o.experts, " experts");
  LADON_CHECK(o.capacity_factor >= 0, kOp, "capacity_factor must be >= 0 (0 means dropless), got ", o.capacity_factor);
  LADON_CHECK(o.noise_epsilon >= 0, kOp, "noise_epsilon must be >= 0, got ", o.noise_epsilon);
  for (std::int64_t h : o.expert_hidden)
    LADON_CHECK(h > 0, kOp, "expert hidden sizes must be positive, got ", shape_str(o.expert_hidden));
  gate_weight = zeros({o.in, o.experts}).requires_grad_();
  noise_weight = zeros({o.in, o.experts}).requires_grad_();
  for (std::int64_t e = 0; e < o.experts; ++e) experts_.push_back(mlp(o.in, o.expert_hidden, o.out, false, gen));
  if (o.shared_expert) shared_ = mlp(o.in, o.expert_hidden, o.out, false, gen);
  held_last_ = o.experts;
}

nn::Sequential& SparseMoE::expert(std::int64_t e) {
  LADON_CHECK(e >= 0 && e < num_experts(), kOp, "expert ", e, " out of range for ", num_experts(), " experts");
  LADON_CHECK(holds(e), kOp, "expert ", e, " is not held by this process (it holds experts [", held_first_, ", ",
              held_last_, "))");
  return experts_[static_cast<std::size_t>(e)];
}

void SparseMoE::hold_experts(std::int64_t first, std::int64_t last) {
  LADON_CHECK(first >= held_first_ && first <= last && last <= held_last_, kOp, "hold_experts(", first, ", ", last,
              "): not a range within the held experts [", held_first_, ", ", held_last_, ")");
  for (std::int64_t e = 0; e < num_experts(); ++e)
    if (e < first || e >= last) experts_[static_cast<std::size_t>(e)] = nn::Sequential();  // frees its tensors
  held_first_ = first;
  held_last_ = last;
}

nn::Sequential& SparseMoE::shared() {
  LADON_CHECK(options_.shared_expert, kOp, "no shared expert (set options.shared_expert)");
  return shared_;
}

const SparseMoELosses& SparseMoE::losses() const {
  LADON_CHECK(ran_, kOp, "no forward has run yet");
  return losses_;
}

const SparseMoEStats& SparseMoE::stats() const {
  LADON_CHECK(ran_, kOp, "no forward has run yet");
  return stats_;
}

void SparseMoE::visit(Visitor& v) {
  v("gate_weight", gate_weight);
  v("noise_weight", noise_weight);
  v.generator("noise", noise_gen_);
  for (std::int64_t e = held_first_; e < held_last_; ++e)
    v("experts." + std::to_string(e), experts_[static_cast<std::size_t>(e)]);
  if (options_.shared_expert) v("shared", shared_);
}

Tensor SparseMoE::forward(const Tensor& input) {
  const SparseMoEOptions& o = options_;
  LADON_CHECK(input.dim() >= 2 && input.shape().back() == o.in, kOp, "expects input [tokens, ", o.in, "] (or [..., ",
              o.in, "]), got ", shape_str(input.shape()));
  const Tensor x = input.reshape({-1, o.in});
  const std::int64_t T = x.shape()[0], E = o.experts, K = o.k;
  LADON_CHECK(T > 0, kOp, "needs at least one token, got ", shape_str(input.shape()));
  LADON_CHECK(dispatch_ || (held_first_ == 0 && held_last_ == E), kOp, "holds only experts [", held_first_, ", ",
              held_last_, ") of ", E, " and has no dispatch to run the others");

  // ---- Router: H = x W_g (+ noise), top k by value (ties go to the lower expert index).
  const Tensor clean = matmul(x, gate_weight);  // [T, E]
  const bool noisy = o.noisy_gating && is_training();
  Tensor H = clean, noise_std;
  if (noisy) {
    noise_std = softplus(matmul(x, noise_weight)) + o.noise_epsilon;
    H = clean + randn({T, E}, noise_gen_) * noise_std;
  }
  const Tensor Hc = H.detach().contiguous();
  const float* h = Hc.data<float>();
  const std::int64_t ranked = std::min(K + 1, E);  // the (k+1)-th is the load loss's threshold
  std::vector<std::int64_t> order(static_cast<std::size_t>(E)), top(static_cast<std::size_t>(T * K)),
      next(static_cast<std::size_t>(T)), kth(static_cast<std::size_t>(T));
  std::vector<float> selected_mask(static_cast<std::size_t>(T * E), 0.0f);
  std::vector<std::int64_t> selected(static_cast<std::size_t>(E), 0);
  for (std::int64_t t = 0; t < T; ++t) {
    const float* row = h + t * E;
    std::iota(order.begin(), order.end(), 0);
    std::partial_sort(order.begin(), order.begin() + ranked, order.end(),
                      [row](std::int64_t a, std::int64_t b) { return row[a] > row[b] || (row[a] == row[b] && a < b); });
    for (std::int64_t s = 0; s < K; ++s) {
      const std::int64_t e = order[static_cast<std::size_t>(s)];
      top[static_cast<std::size_t>(t * K + s)] = e;
      selected_mask[static_cast<std::size_t>(t * E + e)] = 1.0f;
      ++selected[static_cast<std::size_t>(e)];
    }
    kth[static_cast<std::size_t>(t)] = order[static_cast<std::size_t>(K - 1)];
    next[static_cast<std::size_t>(t)] = order[static_cast<std::size_t>(ranked - 1)];
  }
  const Tensor top_index = tensor(top, {T, K});
  const Tensor gates = softmax(gather(H, 1, top_index), 1);  // [T, K], renormalised over the kept
  const Tensor flat_gates = gates.reshape({T * K});

  // ---- Dispatch with capacity: slot-major priority (every first choice before any second).
  const std::int64_t capacity =
      o.capacity_factor > 0
          ? std::max<std::int64_t>(
                1, static_cast<std::int64_t>(
                       std::ceil(o.capacity_factor * static_cast<double>(T * K) / static_cast<double>(E) - 1e-9)))
          : 0;
  std::vector<std::vector<std::int64_t>> rows(static_cast<std::size_t>(E)), slots(static_cast<std::size_t>(E));
  std::int64_t dropped = 0;
  for (std::int64_t s = 0; s < K; ++s)
    for (std::int64_t t = 0; t < T; ++t) {
      const auto e = static_cast<std::size_t>(top[static_cast<std::size_t>(t * K + s)]);
      if (capacity > 0 && static_cast<std::int64_t>(rows[e].size()) >= capacity) {
        ++dropped;
        continue;
      }
      rows[e].push_back(t);
      slots[e].push_back(t * K + s);
    }

  // ---- Experts: each runs on its own routed rows only (here, or where the dispatch sends them);
  // one scatter-add combines them.
  std::vector<Tensor> routed(experts_.size());
  for (std::size_t e = 0; e < experts_.size(); ++e)
    routed[e] = rows[e].empty() ? zeros({0, o.in}) : index_select(x, 0, int_tensor(rows[e]));
  std::vector<Tensor> results;
  if (dispatch_) {
    results = dispatch_->run(*this, routed);
    LADON_CHECK(results.size() == experts_.size(), kOp, "the expert dispatch returned ", results.size(),
                " outputs for ", experts_.size(), " experts");
  } else {
    results.resize(experts_.size());
    for (std::size_t e = 0; e < experts_.size(); ++e)
      if (!rows[e].empty()) results[e] = experts_[e].forward(routed[e]);
  }
  std::vector<Tensor> pieces;
  std::vector<std::int64_t> destination;
  for (std::size_t e = 0; e < experts_.size(); ++e) {
    if (rows[e].empty()) continue;
    const Tensor weight = index_select(flat_gates, 0, int_tensor(slots[e])).unsqueeze(1);
    pieces.push_back(results[e] * weight);
    destination.insert(destination.end(), rows[e].begin(), rows[e].end());
  }
  Tensor out = pieces.empty() ? zeros({T, o.out})
                              : index_add(zeros({T, o.out}), 0, int_tensor(std::move(destination)), cat(pieces, 0));
  if (o.shared_expert) out = out + shared_.forward(x);

  // ---- Auxiliary losses, all from the routing before capacity drops.
  std::vector<std::int64_t> dense_index(static_cast<std::size_t>(T * K));
  for (std::int64_t t = 0; t < T; ++t)
    for (std::int64_t s = 0; s < K; ++s)
      dense_index[static_cast<std::size_t>(t * K + s)] = t * E + top[static_cast<std::size_t>(t * K + s)];
  const Tensor dense_gates =
      index_add(zeros({T * E}), 0, int_tensor(std::move(dense_index)), flat_gates).reshape({T, E});
  // Sums over tokens: this process's, or (with an expert-parallel dispatch) every rank's.
  const auto over_tokens = [this](const Tensor& t) { return dispatch_ ? dispatch_->sum_over_tokens(t) : t; };
  const Tensor importance = over_tokens(sum(dense_gates, {0}));
  const double all_tokens = over_tokens(scalar(static_cast<double>(T))).item();

  std::vector<float> counts(selected.begin(), selected.end());
  Tensor load;
  if (noisy && K < E) {
    // P(x, i) = Φ((clean_i - threshold_i) / std_i): the chance that expert i stays in the top k under
    // a fresh draw of its own noise, the others' noisy logits held fixed.
    const Tensor in_top = tensor(selected_mask, {T, E});
    const Tensor if_in = gather(H, 1, tensor(next, {T, 1}));  // (k+1)-th largest
    const Tensor if_out = gather(H, 1, tensor(kth, {T, 1}));  // k-th largest
    load = over_tokens(sum(normal_cdf((clean - where(in_top, if_in, if_out)) / noise_std), {0}));
  } else {
    load = over_tokens(tensor(counts, {E}));  // no noise to differentiate through: the counts of gates > 0
  }
  const Tensor f = over_tokens(tensor(counts, {E})).detach() / (all_tokens * static_cast<double>(K));
  const Tensor router_probs = over_tokens(sum(softmax(H, 1), {0})) / all_tokens;
  const Tensor row_max = max(H, 1, true).values.detach();
  const Tensor lse = log(sum(exp(H - row_max), {1})) + row_max.squeeze(1);

  losses_.importance = cv_squared(importance) * o.importance_weight;
  losses_.load = cv_squared(load) * o.load_weight;
  losses_.balance = sum(f * router_probs) * (o.balance_weight * static_cast<double>(E));
  losses_.z = over_tokens(sum(lse * lse)) * (o.z_loss_weight / all_tokens);
  losses_.total = losses_.importance + losses_.load + losses_.balance + losses_.z;

  // ---- Statistics.
  SparseMoEStats& st = stats_;
  st.router_logits = Hc;
  st.gate_weights = dense_gates.detach();
  st.selected = selected;
  st.kept.assign(static_cast<std::size_t>(E), 0);
  for (std::size_t e = 0; e < rows.size(); ++e) st.kept[e] = static_cast<std::int64_t>(rows[e].size());
  const std::vector<float> imp = importance.detach().to_vector<float>();
  st.mean_gate.assign(imp.begin(), imp.end());
  for (double& m : st.mean_gate) m /= static_cast<double>(T);
  st.utilisation.resize(static_cast<std::size_t>(E));
  const double assignments = static_cast<double>(T * K);
  for (std::size_t e = 0; e < selected.size(); ++e) st.utilisation[e] = static_cast<double>(selected[e]) / assignments;
  st.load_imbalance =
      static_cast<double>(*std::max_element(selected.begin(), selected.end())) * static_cast<double>(E) / assignments;
  st.dropped_fraction = static_cast<double>(dropped) / assignments;
  st.capacity = capacity;
  st.tokens = T;
  ran_ = true;

  Shape shape = input.shape();
  shape.back() = o.out;
  return out.reshape(shape);
}

}  // namespace ladon::mtl
