#include <doctest/doctest.h>

#include <cmath>

#include "helpers.h"
#include "ladon.h"

using namespace ladon;
using ladon::testing::error_message;

TEST_CASE("mtl/binary_metrics: AUC by hand, with ties, masks and one class") {
  // Positives 0.35, 0.8; negatives 0.1, 0.4: of the 4 pairs, 3 are ordered right.
  CHECK(mtl::auc({0.1, 0.4, 0.35, 0.8}, {0, 0, 1, 1}) == 0.75);
  // Masking out 0.1 leaves the pairs (0.35, 0.4) wrong and (0.8, 0.4) right.
  CHECK(mtl::auc({0.1, 0.4, 0.35, 0.8}, {0, 0, 1, 1}, {0, 1, 1, 1}) == 0.5);
  // Ties count half: positives 0.5, 0.9 against negatives 0.5, 0.5 -> (0.5 + 0.5 + 1 + 1) / 4.
  CHECK(mtl::auc({0.5, 0.5, 0.5, 0.9}, {0, 1, 0, 1}) == 0.75);
  CHECK(mtl::auc({0.3, 0.3}, {0, 1}) == 0.5);
  CHECK(mtl::auc({0.9, 0.1}, {0, 1}) == 0.0);
  CHECK(std::isnan(mtl::auc({0.1, 0.2}, {1, 1})));
  CHECK(std::isnan(mtl::auc({0.1, 0.2}, {0, 1}, {0, 0})));
  CHECK(error_message([] { mtl::auc({0.1}, {2}); }) == "auc: label 0 is 2, not 0 or 1");
  CHECK(error_message([] { mtl::auc({0.1}, {1, 0}); }) == "auc: 1 scores but 2 labels");
  CHECK(error_message([] { mtl::auc({NAN}, {1}); }) == "auc: score 0 is NaN");
}

TEST_CASE("mtl/binary_metrics: AUC is O(n log n) exact on a large input against the pair count") {
  std::vector<double> s, y;
  for (int i = 0; i < 300; ++i) {
    s.push_back(static_cast<double>((i * 37) % 50));  // many ties
    y.push_back((i * 11) % 7 < 3 ? 1 : 0);
  }
  double right = 0, pairs = 0;
  for (std::size_t i = 0; i < s.size(); ++i)
    for (std::size_t j = 0; j < s.size(); ++j)
      if (y[i] == 1 && y[j] == 0) {
        pairs += 1;
        right += s[i] > s[j] ? 1 : s[i] == s[j] ? 0.5 : 0;
      }
  CHECK(mtl::auc(s, y) == doctest::Approx(right / pairs).epsilon(1e-12));
}

TEST_CASE("mtl/binary_metrics: log loss, accuracy at 0.5, GAUC, MSE by hand") {
  CHECK(mtl::log_loss({0.8, 0.4}, {1, 0}) == doctest::Approx(-(std::log(0.8) + std::log(0.6)) / 2));
  CHECK(mtl::log_loss({0.8, 0.4}, {1, 0}, {0, 1}) == doctest::Approx(-std::log(0.6)));
  CHECK(mtl::log_loss({1.0}, {0}) == doctest::Approx(-std::log(1e-7)));  // clipped, not infinite
  CHECK(error_message([] { mtl::log_loss({1.5}, {1}); }) == "log_loss: probability 0 is 1.5, outside [0, 1]");
  CHECK(mtl::accuracy_at_half({0.5, 0.49, 0.9, 0.1}, {1, 1, 0, 0}) == 0.5);
  // Group 1: 0.2:0, 0.6:1, 0.9:0 -> AUC 0.5 over 3 samples; group 2: 0.7:0, 0.3:1 -> 0 over 2;
  // group 3 has one class only and is left out: (3 * 0.5 + 2 * 0) / 5.
  CHECK(mtl::gauc({0.2, 0.6, 0.9, 0.7, 0.3, 0.5}, {0, 1, 0, 0, 1, 1}, {1, 1, 1, 2, 2, 3}) == doctest::Approx(0.3));
  CHECK(std::isnan(mtl::gauc({0.2}, {1}, {1})));
  CHECK(mtl::mse({1, 2, 4}, {1, 0, 0}, {1, 1, 0}) == 2.0);
  CHECK(std::isnan(mtl::mse({}, {})));
}

TEST_CASE("mtl/task_loss: a label mask leaves unlabelled samples out of the mean") {
  const mtl::TaskSpec binary{.name = "b", .out = 1, .tower_hidden = {}, .kind = mtl::TaskKind::binary};
  // Logit 0 on both; only the first is labelled: the loss is -log sigmoid(0) = log 2.
  const Tensor l = mtl::task_loss(binary, zeros({2, 1}), tensor(std::vector<float>{1, 0}, {2, 1}),
                                  tensor(std::vector<float>{1, 0}, {2, 1}));
  CHECK(l.item() == doctest::Approx(std::log(2.0)));
  const mtl::TaskSpec reg{.name = "r", .out = 1, .tower_hidden = {}, .kind = mtl::TaskKind::regression};
  const Tensor r = mtl::task_loss(reg, tensor(std::vector<float>{1, 3}, {2, 1}), zeros({2, 1}),
                                  tensor(std::vector<float>{0, 1}, {2}));
  CHECK(r.item() == doctest::Approx(9.0));
  CHECK(error_message([&] { mtl::task_loss(reg, zeros({2, 1}), zeros({2, 1}), zeros({3})); }) ==
        "task_loss: task 'r': the mask must be float32 with one entry per sample (2), got [3]");
}
