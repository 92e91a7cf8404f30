#include <doctest/doctest.h>

#include <cmath>

#include "ladon.h"

using namespace ladon;

namespace {
Tensor labels(std::vector<std::int64_t> v) {
  const auto n = static_cast<std::int64_t>(v.size());
  return tensor(std::move(v), {n});
}

const std::vector<mtl::TaskSpec> kTasks = {{"cls", 3, {}}, {"reg", 1, {}, mtl::TaskKind::regression}, {"aux", 2, {}, mtl::TaskKind::multiclass, true}};
}  // namespace

TEST_CASE("task metrics: accuracy and MSE over batches, masks, auxiliary tasks left out, by hand") {
  mtl::TaskMetrics metrics(kTasks);
  // Batch 1. cls: argmax (1, 2, 0) against (1, 0, 0): 2 of 3. reg: errors (-0.5, 0, 1): 1.25 summed.
  metrics.add({tensor({1, 2, 0, 0, 0, 5, 3, 1, 1}, {3, 3}), tensor({1, 2, 0}, {3, 1}), tensor({0, 1, 1, 0, 0, 1}, {3, 2})},
              {labels({1, 0, 0}), tensor({1.5f, 2, -1}, {3}), labels({1, 1, 1})});
  // Batch 2. cls: right; reg: masked out, so its error of 2 does not count.
  metrics.add({tensor({0, 1, 0}, {1, 3}), tensor({3}, {1, 1}), tensor({1, 0}, {1, 2})},
              {labels({1}), tensor({1}, {1, 1}), labels({1})}, {Tensor(), tensor({0}, {1}), Tensor()});
  const std::vector<mtl::TaskResult> r = metrics.results();
  REQUIRE(r.size() == 2);  // "aux" is trained, never reported
  CHECK(r[0].task == "cls");
  CHECK(r[0].metric == "accuracy");
  CHECK(r[0].value == doctest::Approx(3.0 / 4));
  CHECK(r[0].count == 4);
  CHECK(r[1].task == "reg");
  CHECK(r[1].metric == "mse");
  CHECK(r[1].value == doctest::Approx(1.25 / 3));
  CHECK(r[1].count == 3);
  CHECK(metrics.format_table() ==
        "task        metric       value   samples\n"
        "cls         accuracy    0.7500         4\n"
        "reg         mse         0.4167         3\n");
  metrics.reset();
  CHECK(metrics.results()[0].count == 0);
  CHECK(std::isnan(metrics.results()[0].value));
}

TEST_CASE("task metrics: bad input names the task and the shapes") {
  mtl::TaskMetrics metrics(kTasks);
  const Tensor cls = zeros({2, 3}), reg = zeros({2, 1}), aux = zeros({2, 2});
  const Tensor y_reg = zeros({2}), y_aux = labels({0, 1});
  CHECK_THROWS_WITH_AS(metrics.add({cls}, {labels({0, 1}), y_reg, y_aux}),
                       "TaskMetrics: 1 outputs, 3 targets and 0 masks for 3 tasks", Error);
  CHECK_THROWS_WITH_AS(metrics.add({cls, reg, aux}, {labels({0, 3}), y_reg, y_aux}),
                       "TaskMetrics: task 'cls' target 3 out of range for 3 classes", Error);
  CHECK_THROWS_WITH_AS(metrics.add({cls, reg, aux}, {zeros({2}), y_reg, y_aux}),
                       "TaskMetrics: task 'cls' expects int64 class targets [2], got float32 [2]", Error);
  CHECK_THROWS_WITH_AS(metrics.add({zeros({2, 4}), reg, aux}, {labels({0, 1}), y_reg, y_aux}),
                       "TaskMetrics: task 'cls' expects float32 outputs [batch, 3], got [2, 4]", Error);
  CHECK_THROWS_WITH_AS(metrics.add({cls, reg, aux}, {labels({0, 1}), zeros({3}), y_aux}),
                       "TaskMetrics: task 'reg' expects float32 targets [2] or [2, 1], got float32 [3]", Error);
  CHECK_THROWS_WITH_AS(
      metrics.add({cls, reg, aux}, {labels({0, 1}), y_reg, y_aux}, {Tensor(), zeros({3}), Tensor()}),
      "TaskMetrics: task 'reg' expects a float32 mask [2], got float32 [3]", Error);
}

TEST_CASE("task metrics: a binary task reports accuracy, AUC with ties and log loss over masked batches, by hand") {
  const mtl::TaskSpec hit{"hit", 1, {}, mtl::TaskKind::binary};
  CHECK(mtl::task_metric_names(hit) == std::vector<std::string>{"accuracy", "auc", "log_loss"});
  CHECK(mtl::task_metric_names(kTasks[0]) == std::vector<std::string>{"accuracy"});
  CHECK(mtl::task_metric_names(kTasks[1]) == std::vector<std::string>{"mse"});
  CHECK(mtl::higher_is_better("auc"));
  CHECK_FALSE(mtl::higher_is_better("log_loss"));
  mtl::TaskMetrics metrics({hit});
  metrics.add({tensor({2, -1, 0.5f, 0.5f}, {4, 1})}, {tensor({1, 0, 0, 1}, {4, 1})});
  // The second batch's -3 is masked out: it would rank below every positive.
  metrics.add({tensor({0.5f, -3}, {2, 1})}, {tensor({1, 0}, {2})}, {tensor({1, 0}, {2})});
  // Counted: logits (2, -1, .5, .5, .5), labels (1, 0, 0, 1, 1). Accuracy at logit 0: 4 of 5.
  // AUC: positives 2, .5, .5 against negatives -1, .5: 2 wins each for the 2; each .5 beats -1
  // and ties the negative .5 (a half): (2 + 1.5 + 1.5) / 6. Log loss: the mean of softplus(-2),
  // softplus(-1), softplus(.5), softplus(-.5) twice.
  const std::vector<mtl::TaskResult> r = metrics.results();
  REQUIRE(r.size() == 3);
  CHECK(r[0].metric == "accuracy");
  CHECK(r[0].value == doctest::Approx(0.8));
  CHECK(r[1].metric == "auc");
  CHECK(r[1].value == doctest::Approx(5.0 / 6));
  CHECK(r[2].metric == "log_loss");
  CHECK(r[2].value == doctest::Approx(0.4724841302203031));
  CHECK(r[2].count == 5);
  CHECK(metrics.format_table() ==
        "task        metric       value   samples\n"
        "hit         accuracy    0.8000         5\n"
        "hit         auc         0.8333         5\n"
        "hit         log_loss    0.4725         5\n");
  // Logits 40 and 50 have the same double probability (1.0); AUC still ranks them.
  metrics.reset();
  metrics.add({tensor({40, 50}, {2, 1})}, {tensor({1, 0}, {2})});
  CHECK(metrics.results()[1].value == 0.0);
  // One class only: AUC is undefined (NaN); accuracy and log loss are not.
  metrics.reset();
  metrics.add({tensor({1, -1}, {2, 1})}, {tensor({1, 1}, {2})});
  CHECK(std::isnan(metrics.results()[1].value));
  CHECK(metrics.results()[0].value == 0.5);
  CHECK(std::isfinite(metrics.results()[2].value));
  metrics.reset();
  for (const mtl::TaskResult& x : metrics.results()) CHECK(std::isnan(x.value));
}
