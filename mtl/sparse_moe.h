// A sparsely-gated mixture-of-experts layer (Shazeer et al. 2017; Switch, GShard and ST-MoE losses).
//
//   H(x) = x W_g + N(0, 1) * (softplus(x W_noise) + noise_epsilon)   (noise in training only)
//   G(x) = softmax over the k largest entries of H(x), zero elsewhere
//   y(x) = sum over the selected experts e of G(x)_e * E_e(x)  [+ shared(x)]
//
// Only the selected experts run: for each expert, its routed rows are gathered (index_select), the
// expert's MLP runs on those rows alone, the result is scaled by the gate and scatter-added back
// (one index_add for all experts). W_g and W_noise start at zero, so early routing is balanced.
//
// Capacity (capacity_factor > 0): each expert takes at most ceil(capacity_factor * tokens * k /
// experts) assignments. First choices of all tokens are served before second choices (GShard), in
// token order within a choice; an assignment over capacity is dropped, so that expert contributes
// nothing to that token (no renormalisation of the remaining gates). capacity_factor = 0 is
// dropless. Every statistic and loss below is computed from the routing *before* drops.
//
// After each forward, losses() holds the auxiliary losses (already multiplied by their weights;
// add losses().total to the task loss) and stats() what the router did:
//   importance = w_importance * CV²(sum_x G(x))                    differentiable
//   load       = w_load * CV²(sum_x P(x, i)), P(x, i) = Φ((x W_g)_i - kth_excluding(H(x), k, i))
//                / (softplus(x W_noise)_i + noise_epsilon))            differentiable; without noise
//                (eval, noisy_gating off) or k = experts, CV² of the selection counts, a constant
//   balance    = w_balance * experts * sum_i f_i P_i, f_i the fraction of the tokens * k
//                assignments that chose expert i (Switch's argmax fraction when k = 1), P_i the
//                mean of softmax(H) over all experts       differentiable through P; = w_balance
//                                                           when routing is uniform
//   z          = w_z * mean_x (logsumexp H(x))²               differentiable
// CV² is the population variance over the mean squared (as in Shazeer's code), 0 for one expert.
// With an ExpertDispatch (below) every sum and mean over tokens in these losses runs over every
// rank's tokens; stats() stays this process's own. Capacity is per process (GShard's groups).
//
// Expert sharding (hold_experts): a process can keep only a range of the experts, as
// dist::ExpertParallel does on each rank; the others' parameters are freed and visit() lists only
// the held experts (under their global names "experts.<e>.*"), so parameters(), optimizers and
// state dicts see this process's shard. Such a layer needs a dispatch that runs the other experts
// elsewhere.
#pragma once

#include "layer_fence.h"

#include <cstdint>
#include <vector>

#include "../core/random.h"
#include "../nn/module.h"

namespace ladon::mtl {

struct SparseMoEOptions {
  std::int64_t in = 0;
  std::int64_t out = 0;  // 0: the same as in
  std::int64_t experts = 8;
  std::int64_t k = 2;
  std::vector<std::int64_t> expert_hidden = {64};  // each expert: in -> hidden... -> out, ReLU between
  bool noisy_gating = true;                        // Shazeer's tunable noise, in training only
  double noise_epsilon = 1e-2;                     // added to softplus(x W_noise): the noise never vanishes
  double capacity_factor = 0.0;                    // 0: dropless
  bool shared_expert = false;                      // an always-on expert of the same shape, added unscaled
  double importance_weight = 0.1;                  // Shazeer's w_importance
  double load_weight = 0.1;                        // Shazeer's w_load
  double balance_weight = 0.0;                     // Switch's alpha (1e-2 in the paper)
  double z_loss_weight = 0.0;                      // ST-MoE's router z-loss coefficient (1e-3 in the paper)
  std::uint64_t seed = 0x5eed;                     // of the layer's own noise generator
};

// The auxiliary losses of the last forward, 0-d tensors, each times its weight.
struct SparseMoELosses {
  Tensor importance, load, balance, z;
  Tensor total;  // their sum
};

// What the router did in the last forward. Counts are over tokens * k assignments.
struct SparseMoEStats {
  Tensor router_logits;                // [tokens, experts] H(x), detached (noisy in training)
  Tensor gate_weights;                 // [tokens, experts] G(x), detached; zero outside each token's top k
  std::vector<std::int64_t> selected;  // per expert: assignments routed to it, before capacity
  std::vector<std::int64_t> kept;      // per expert: assignments it computed, after capacity
  std::vector<double> mean_gate;       // per expert: mean of G(x)_e over the tokens
  std::vector<double> utilisation;     // per expert: selected / (tokens * k), sums to 1
  double load_imbalance = 0;           // max selected / mean selected: 1 when perfectly balanced
  double dropped_fraction = 0;         // assignments dropped by capacity / (tokens * k)
  std::int64_t capacity = 0;           // per-expert capacity of the last forward; 0 when dropless
  std::int64_t tokens = 0;
};

class SparseMoE;

// Where a SparseMoE's experts run and over which tokens its balance statistics are summed. Without
// one (the default) every expert runs in this process on this process's tokens;
// dist::ExpertParallel runs each expert on the rank that owns it and sums the statistics over
// every rank's tokens, so the balance losses see the global routing.
class ExpertDispatch {
 public:
  virtual ~ExpertDispatch() = default;
  // routed[e] holds the rows routed to expert e, [n_e, in] (n_e may be 0); returns each expert's
  // output for its rows, [n_e, out], in the same order. Differentiable.
  virtual std::vector<Tensor> run(SparseMoE& layer, const std::vector<Tensor>& routed) = 0;
  // x summed over every participant's tokens (here: x itself). Differentiable.
  virtual Tensor sum_over_tokens(const Tensor& x) = 0;
};

class SparseMoE : public nn::Layer {
 public:
  // Expert and shared-expert weights are drawn from gen (PyTorch's Linear init); the routing noise
  // comes from the layer's own generator, seeded by options.seed.
  explicit SparseMoE(const SparseMoEOptions& options, Generator& gen = default_generator());

  // [tokens, in] -> [tokens, out]; any leading dims are flattened into tokens and restored.
  Tensor forward(const Tensor& x) override;
  void visit(Visitor& v) override;

  const SparseMoELosses& losses() const;  // throws before the first forward
  const SparseMoEStats& stats() const;
  Tensor aux_loss() const { return losses().total; }

  std::int64_t num_experts() const { return options_.experts; }
  std::int64_t k() const { return options_.k; }
  std::int64_t in_features() const { return options_.in; }
  std::int64_t out_features() const { return options_.out; }
  const SparseMoEOptions& options() const { return options_; }
  void seed_noise(std::uint64_t seed) { noise_gen_.seed_(seed); }  // restarts the routing noise
  // Not owned; nullptr (the default) runs every expert here. Must outlive the layer's use.
  void set_dispatch(ExpertDispatch* dispatch) { dispatch_ = dispatch; }
  ExpertDispatch* dispatch() const { return dispatch_; }

  // Keeps experts [first, last) only and frees the others' parameters, for good (narrowing an
  // already narrowed range is allowed; widening is not). Call it before building an optimizer.
  void hold_experts(std::int64_t first, std::int64_t last);
  bool holds(std::int64_t e) const { return e >= held_first_ && e < held_last_; }
  std::int64_t held_first() const { return held_first_; }
  std::int64_t held_last() const { return held_last_; }

  // Router parameters, [in, experts], zero-initialised. Public so they can be set or inspected.
  Tensor gate_weight;
  Tensor noise_weight;
  // Expert e's MLP: parameters "experts.<e>.<layer>.weight"; throws unless this process holds it.
  nn::Sequential& expert(std::int64_t e);
  nn::Sequential& shared();                // the always-on expert ("shared.*"); throws unless enabled

 private:
  SparseMoEOptions options_;
  Generator noise_gen_;
  std::vector<nn::Sequential> experts_;
  nn::Sequential shared_;
  SparseMoELosses losses_;
  SparseMoEStats stats_;
  bool ran_ = false;
  ExpertDispatch* dispatch_ = nullptr;
  std::int64_t held_first_ = 0, held_last_ = 0;  // [first, last): the experts this process keeps
};

}  // namespace ladon::mtl
