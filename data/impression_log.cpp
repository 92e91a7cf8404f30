#include "impression_log.h"

#include <algorithm>
#include <cmath>
#include <tuple>

#include "../core/random.h"

namespace ladon::data {
namespace {

// Cumulative Zipf probabilities: cdf[k] = P(id <= k), P(id = k) proportional to (k + 1)^-s.
std::vector<double> zipf_cdf(std::int64_t n, double s) {
  std::vector<double> cdf(static_cast<std::size_t>(n));
  double total = 0;
  for (std::int64_t k = 0; k < n; ++k) cdf[static_cast<std::size_t>(k)] = total += std::pow(static_cast<double>(k + 1), -s);
  for (double& c : cdf) c /= total;
  return cdf;
}

std::int64_t draw(const std::vector<double>& cdf, Generator& gen) {
  const auto it = std::upper_bound(cdf.begin(), cdf.end(), gen.uniform());
  return std::min<std::int64_t>(it - cdf.begin(), static_cast<std::int64_t>(cdf.size()) - 1);
}

// One side of the world (users or items): two factor vectors and two biases per id.
struct Side {
  std::vector<double> f1, f2, b1, b2;
  Side(std::int64_t n, std::int64_t factors, Generator& gen) {
    const auto count = static_cast<std::size_t>(n * factors);
    f1.resize(count), f2.resize(count), b1.resize(static_cast<std::size_t>(n)), b2.resize(static_cast<std::size_t>(n));
    for (double& x : f1) x = gen.normal();
    for (double& x : f2) x = gen.normal();
    for (double& x : b1) x = 0.5 * gen.normal();
    for (double& x : b2) x = 0.5 * gen.normal();
  }
};

double dot(const std::vector<double>& a, const std::vector<double>& b, std::int64_t i, std::int64_t j, std::int64_t f) {
  double s = 0;
  for (std::int64_t d = 0; d < f; ++d) s += a[static_cast<std::size_t>(i * f + d)] * b[static_cast<std::size_t>(j * f + d)];
  return s;
}

double sigmoid(double x) { return 1.0 / (1.0 + std::exp(-x)); }

}  // namespace

ImpressionLog impression_log(const ImpressionLogOptions& o) {
  constexpr const char* kOp = "impression_log";
  LADON_CHECK(o.rows >= 0, kOp, "rows must be non-negative, got ", o.rows);
  LADON_CHECK(o.users >= 1 && o.items >= 1, kOp, "users and items must be at least 1, got ", o.users, " and ", o.items);
  LADON_CHECK(o.user_zipf > 0 && o.item_zipf > 0 && std::isfinite(o.user_zipf) && std::isfinite(o.item_zipf), kOp,
              "Zipf exponents must be positive and finite, got ", o.user_zipf, " and ", o.item_zipf);
  LADON_CHECK(o.factors >= 1, kOp, "factors must be at least 1, got ", o.factors);
  LADON_CHECK(std::isfinite(o.ctr_bias) && std::isfinite(o.cvr_bias) && std::isfinite(o.signal), kOp,
              "ctr_bias, cvr_bias and signal must be finite, got ", o.ctr_bias, ", ", o.cvr_bias, " and ", o.signal);
  LADON_CHECK(std::abs(o.correlation) <= 1.0, kOp, "correlation must be in [-1, 1], got ", o.correlation);

  Generator gen(o.seed);
  const Side users(o.users, o.factors, gen), items(o.items, o.factors, gen);
  const std::vector<double> user_cdf = zipf_cdf(o.users, o.user_zipf), item_cdf = zipf_cdf(o.items, o.item_zipf);
  const double scale = o.signal / std::sqrt(static_cast<double>(o.factors));
  const double r = o.correlation, rest = std::sqrt(1.0 - r * r);

  const auto n = static_cast<std::size_t>(o.rows);
  ImpressionLog log;
  log.p_click.resize(n), log.p_convert.resize(n), log.converts.resize(n), log.click.resize(n), log.purchase.resize(n);
  std::vector<std::int64_t> user_ids(n), item_ids(n);
  for (std::size_t row = 0; row < n; ++row) {
    const std::int64_t u = draw(user_cdf, gen), i = draw(item_cdf, gen);
    const double match = dot(users.f1, items.f1, u, i, o.factors);
    const double other = dot(users.f2, items.f2, u, i, o.factors);
    const double pc = sigmoid(o.ctr_bias + users.b1[static_cast<std::size_t>(u)] + items.b1[static_cast<std::size_t>(i)] + scale * match);
    const double pv = sigmoid(o.cvr_bias + users.b2[static_cast<std::size_t>(u)] + items.b2[static_cast<std::size_t>(i)] +
                              scale * (r * match + rest * other));
    const double click = gen.uniform() < pc ? 1.0 : 0.0;
    const double converts = gen.uniform() < pv ? 1.0 : 0.0;
    user_ids[row] = u, item_ids[row] = i;
    log.p_click[row] = pc, log.p_convert[row] = pv, log.converts[row] = converts;
    log.click[row] = click, log.purchase[row] = click * converts;
  }

  const auto rows = static_cast<std::int64_t>(n);
  TabularDataset& d = log.data;
  d.rows = rows;
  for (const auto& [name, ids, cardinality] : {std::tuple{"user", &user_ids, o.users}, std::tuple{"item", &item_ids, o.items}}) {
    TabularDataset::Field f;
    f.spec = {.name = name, .kind = nn::FieldKind::categorical, .cardinality = cardinality};
    f.ids = tensor(*ids, {rows});
    d.fields.push_back(std::move(f));
  }
  d.task_names = {"click", "purchase"};
  for (const std::vector<double>* labels : {&log.click, &log.purchase}) {
    d.labels.push_back(tensor(std::vector<float>(labels->begin(), labels->end()), {rows, 1}));
    d.masks.push_back(ones({rows, 1}));
  }
  return log;
}

}  // namespace ladon::data
