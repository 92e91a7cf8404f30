// A synthetic impression log for a conversion funnel (impression -> click -> purchase) with known
// true probabilities, to train and judge ESMM, AITM and naive CVR models against the ceiling the
// truth gives (issue 12).
//
//   data::ImpressionLog log = data::impression_log({.rows = 1'000'000, .seed = 1});
//   data::TabularLoader loader(log.data, {.batch = 2048, .shuffle = true});   // fields "user", "item"
//   double ceiling = mtl::auc(log.p_click, log.click);                        // the best any model can do
//
// The world: `users` users and `items` items, each with a popularity rank (id 0 the most popular).
// A row draws its user and its item independently from Zipf laws, P(id = k) proportional to
// (k + 1)^-s. Each user u has latent factors P_u, P'_u ~ N(0, I_f) and biases a_u, c_u ~ N(0, 0.5²);
// each item i has Q_i, Q'_i, b_i, d_i alike. With r = correlation and g = signal,
//   click logit      = ctr_bias + a_u + b_i + g <P_u, Q_i> / sqrt(f)
//   conversion logit = cvr_bias + c_u + d_i + g (r <P_u, Q_i> + sqrt(1 - r²) <P'_u, Q'_i>) / sqrt(f)
// p_click = sigmoid(click logit), p_convert = sigmoid(conversion logit) (the post-click CVR). A row
// draws click ~ Bernoulli(p_click) and, independently, converts ~ Bernoulli(p_convert): whether
// the user would buy had they clicked, known here for every impression (a real log only shows it
// after a click). purchase = click * converts, so a purchase always follows a click.
//
// Everything comes from one Generator seeded with `seed`, in a fixed order (the world's factors
// and biases, then row by row: user, item, click, converts).
#pragma once

#include "layer_fence.h"

#include <cstdint>
#include <vector>

#include "feature_set.h"

namespace ladon::data {

struct ImpressionLogOptions {
  std::int64_t rows = 1'000'000;
  std::int64_t users = 100'000;
  std::int64_t items = 20'000;
  double user_zipf = 1.1;    // s of the users' Zipf law (> 0)
  double item_zipf = 1.1;    // s of the items'
  std::int64_t factors = 8;  // f
  double ctr_bias = -3.0;
  double cvr_bias = -2.0;
  double signal = 1.5;       // g: how much the user-item match moves each logit
  double correlation = 0.5;  // r: how much of the conversion match is the click match, in [-1, 1]
  std::uint64_t seed = 0;
};

struct ImpressionLog {
  // Fields "user" and "item" (categorical, cardinalities users and items); tasks "click" and
  // "purchase" (float32 0/1 [rows, 1], masks all 1).
  TabularDataset data;
  // Per row, in row order: the true probabilities and the counterfactual conversion label.
  std::vector<double> p_click, p_convert, converts;
  std::vector<double> click, purchase;  // the same as data.labels, as vectors for mtl::auc
};

// Throws ladon::Error on rows < 0, users or items < 1, a Zipf exponent <= 0, factors < 1, a
// non-finite bias or signal, or |correlation| > 1.
ImpressionLog impression_log(const ImpressionLogOptions& options = {});

}  // namespace ladon::data
