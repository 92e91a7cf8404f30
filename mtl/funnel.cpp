#include "funnel.h"

#include <cmath>

#include "../core/ops.h"
#include "../nn/loss.h"

namespace ladon::mtl {

namespace {

std::vector<TaskSpec> esmm_tasks(const ESMMOptions& o) {
  return {{.name = o.ctr, .out = 1, .tower_hidden = o.tower_hidden, .kind = TaskKind::binary},
          {.name = o.cvr, .out = 1, .tower_hidden = o.tower_hidden, .kind = TaskKind::binary}};
}

// log(1 + e^x) without overflow. Not max(x, 0) + log(1 + e^-|x|): its two kinks at 0 cancel in
// value but not in autograd's subgradients (the slope at 0 would come out 0, not 1/2). Past 30 the
// clamped part is e^30-accurate and the relu carries the rest.
Tensor softplus(const Tensor& x) { return log(exp(clamp(x, -30.0, 30.0)) + 1.0) + relu(x - 30.0); }

}  // namespace

ESMM::ESMM(const ESMMOptions& options, Generator& gen) : MultiTaskModel(esmm_tasks(options)) {
  check_tasks("ESMM", tasks_);
  LADON_CHECK(options.in > 0, "ESMM", "in must be positive, got ", options.in);
  towers_ = TaskTowers(options.in, tasks_, gen);
}

std::vector<Tensor> ESMM::forward(const Tensor& x) {
  set_representation({x});
  return towers_.forward(x);
}

Tensor ctcvr_probability(const Tensor& ctr_logit, const Tensor& cvr_logit) {
  return sigmoid(ctr_logit) * sigmoid(cvr_logit);
}

Tensor esmm_loss(const Tensor& ctr_logit, const Tensor& cvr_logit, const Tensor& click, const Tensor& conversion) {
  const char* op = "esmm_loss";
  const std::int64_t n = ctr_logit.numel();
  LADON_CHECK(cvr_logit.numel() == n && click.numel() == n && conversion.numel() == n, op, "logits ",
              shape_str(ctr_logit.shape()), " and ", shape_str(cvr_logit.shape()), ", click ", shape_str(click.shape()),
              " and conversion ", shape_str(conversion.shape()), " must hold one value per impression");
  const std::vector<float> y = click.contiguous().to_vector<float>(), z = conversion.contiguous().to_vector<float>();
  for (std::size_t i = 0; i < y.size(); ++i)
    LADON_CHECK(z[i] == 0 || y[i] == 1, op, "impression ", i, " converts without a click");
  const Tensor a = ctr_logit.reshape({-1}), b = cvr_logit.reshape({-1});
  const Tensor yc = click.reshape({-1}), t = (yc * conversion.reshape({-1})).detach();
  const Tensor l_ctr = nn::binary_cross_entropy_with_logits(a, yc);
  const Tensor log_p = -softplus(-a) - softplus(-b);
  const Tensor log_not_p = log(clamp(1.0 - sigmoid(a) * sigmoid(b), 1e-7, 1.0));
  const Tensor l_ctcvr = -mean(t * log_p + (1.0 - t) * log_not_p);
  return l_ctr + l_ctcvr;
}

AITM::AITM(const AITMOptions& options, Generator& gen)
    : MultiTaskModel(options.tasks),
      h1(options.tower_hidden.empty() ? 1 : options.tower_hidden.back(), options.tower_hidden.empty() ? 1 : options.tower_hidden.back(), {.bias = false}, gen),
      h2(h1.in_features(), h1.in_features(), {.bias = false}, gen),
      h3(h1.in_features(), h1.in_features(), {.bias = false}, gen) {
  const char* op = "AITM";
  check_tasks(op, tasks_);
  LADON_CHECK(options.in > 0, op, "in must be positive, got ", options.in);
  LADON_CHECK(!options.tower_hidden.empty(), op, "tower_hidden needs at least one width (the last is AIT's k)");
  for (const TaskSpec& t : tasks_)
    LADON_CHECK(t.kind == TaskKind::binary && t.out == 1, op, "task '", t.name, "' must be binary with out 1");
  k_ = options.tower_hidden.back();
  const std::vector<std::int64_t> hidden(options.tower_hidden.begin(), options.tower_hidden.end() - 1);
  for (std::size_t t = 0; t < tasks_.size(); ++t) {
    towers_.add(tasks_[t].name, mlp(options.in, hidden, k_, true, gen));
    if (t > 0) transfers_.add(tasks_[t].name, mlp(k_, {}, k_, true, gen));
    outputs_.add(tasks_[t].name, nn::Linear(k_, 1, {}, gen));
  }
}

void AITM::visit(Visitor& v) {
  v("towers", towers_);
  v("transfers", transfers_);
  v("outputs", outputs_);
  v("ait.h1", h1);
  v("ait.h2", h2);
  v("ait.h3", h3);
}

Tensor AITM::ait(const Tensor& q, const Tensor& p) {
  const double scale = 1.0 / std::sqrt(static_cast<double>(h1.in_features()));
  const Tensor sq = sum(h1(q) * h2(q), {1}, true) * scale, sp = sum(h1(p) * h2(p), {1}, true) * scale;
  last_weights_ = softmax(cat({sq, sp}, 1), 1);                              // [B, 2]
  const std::vector<Tensor> w = split(last_weights_, 1, 1);
  return w[0] * h3(q) + w[1] * h3(p);
}

std::vector<Tensor> AITM::forward(const Tensor& x) {
  set_representation({x});
  std::vector<Tensor> out;
  weights_.assign(tasks_.size(), Tensor());
  Tensor z;
  for (std::size_t t = 0; t < tasks_.size(); ++t) {
    const Tensor q = towers_[t](x);
    if (t == 0) {
      z = q;
    } else {
      z = ait(q, transfers_[t - 1](z));
      weights_[t] = last_weights_;
    }
    out.push_back(outputs_[t](z));
  }
  return out;
}

const Tensor& AITM::transfer_weights(std::size_t task) const {
  LADON_CHECK(task >= 1 && task < weights_.size() && weights_[task].defined(), "AITM", "no transfer weights for task ",
              task, " (tasks from 1 have them, after a forward)");
  return weights_[task];
}

Tensor aitm_calibration(const std::vector<Tensor>& logits, double alpha) {
  LADON_CHECK(logits.size() >= 2, "aitm_calibration", "needs at least two tasks, got ", logits.size());
  Tensor total;
  for (std::size_t t = 1; t < logits.size(); ++t) {
    const Tensor v = relu(sigmoid(logits[t].reshape({-1})) - sigmoid(logits[t - 1].reshape({-1})));
    total = total.defined() ? total + v : v;
  }
  return mean(total) * alpha;
}

}  // namespace ladon::mtl
