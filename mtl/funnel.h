// Models for a conversion funnel (impression -> click -> purchase), where later tasks have few
// positives and are observed only after earlier ones.
//
// ESMM (Ma et al., SIGIR 2018): a CTR tower and a CVR tower on one shared input; forward returns
// their logits a and b, pCTR = sigmoid(a), pCVR = sigmoid(b), pCTCVR = pCTR * pCVR. esmm_loss
// trains both over all impressions: BCE(click, pCTR) + BCE(click * conversion, pCTCVR); no loss
// reads post-click CVR labels, which is how the CVR tower learns over the entire impression space.
//
// AITM (Xi et al., KDD 2021, following the official code): one tower q_t per task in funnel
// order; task t >= 2 mixes its own q_t with p_{t-1} = ReLU(Linear(z_{t-1})) transferred from the
// task before through one shared attention module AIT (bias-free k x k maps h1, h2, h3; each input
// u scores <h1 u, h2 u> / sqrt(k); z_t = softmax-weighted sum of h3 u); logits Linear(z_t) -> 1.
// aitm_calibration is the behavioural-expectation calibrator alpha * mean_b sum_{t>=2}
// max(p_t - p_{t-1}, 0): a later step of the funnel may not be likelier than an earlier one.
#pragma once

#include "layer_fence.h"

#include <cstdint>
#include <string>
#include <vector>

#include "../nn/linear.h"
#include "model.h"

namespace ladon::mtl {

struct ESMMOptions {
  std::int64_t in = 0;
  std::vector<std::int64_t> tower_hidden = {256, 128};  // DeepCTR-Torch's towers
  std::string ctr = "ctr";
  std::string cvr = "cvr";
};

class ESMM : public MultiTaskModel {
 public:
  explicit ESMM(const ESMMOptions& options, Generator& gen = default_generator());
  std::vector<Tensor> forward(const Tensor& x) override;  // {CTR logit [B, 1], CVR logit [B, 1]}
  void visit(Visitor& v) override { v("towers", towers_); }

 private:
  TaskTowers towers_;
};

// pCTR * pCVR from the two logits.
Tensor ctcvr_probability(const Tensor& ctr_logit, const Tensor& cvr_logit);
// Batch-mean BCE(click, pCTR) + batch-mean BCE(click * conversion, pCTCVR), with log pCTCVR =
// -softplus(-a) - softplus(-b) and log(1 - pCTCVR) clamped at log(1e-7). click and conversion are
// float32 0/1 [B] or [B, 1]; a conversion without a click throws.
Tensor esmm_loss(const Tensor& ctr_logit, const Tensor& cvr_logit, const Tensor& click, const Tensor& conversion);

struct AITMOptions {
  std::int64_t in = 0;
  std::vector<std::int64_t> tower_hidden = {128, 64, 32};  // the last is k, the width AIT works in
  std::vector<TaskSpec> tasks;                             // in funnel order, each binary with out 1
};

class AITM : public MultiTaskModel {
 public:
  explicit AITM(const AITMOptions& options, Generator& gen = default_generator());
  std::vector<Tensor> forward(const Tensor& x) override;  // one logit [B, 1] per task
  void visit(Visitor& v) override;
  // z = AIT(q, p) for one pair, [B, k] each: what the shared attention does (exposed for tests).
  Tensor ait(const Tensor& q, const Tensor& p);
  // The attention weights of the last forward for task t >= 1: [B, 2] (own tower, transferred).
  const Tensor& transfer_weights(std::size_t task) const;

  nn::Linear h1, h2, h3;

 private:
  std::int64_t k_ = 0;
  TaskHeads<nn::Sequential> towers_;     // q_t
  TaskHeads<nn::Sequential> transfers_;  // g_{t-1}, under the name of the task it feeds (t >= 1)
  TaskHeads<nn::Linear> outputs_;        // z_t -> logit
  std::vector<Tensor> weights_;
  Tensor last_weights_;
};

// alpha * mean over the batch of sum_{t >= 1} max(p_t - p_{t-1}, 0), p_t = sigmoid(logits[t]).
Tensor aitm_calibration(const std::vector<Tensor>& logits, double alpha = 0.6);

}  // namespace ladon::mtl
