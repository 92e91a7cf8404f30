#include <doctest/doctest.h>

#include <cmath>

#include "helpers.h"
#include "ladon.h"

using namespace ladon;
using namespace ladon::data;
using ladon::testing::error_message;

namespace {
std::vector<double> counts(const Tensor& ids, std::int64_t n) {
  std::vector<double> c(static_cast<std::size_t>(n), 0.0);
  for (std::int64_t id : ids.to_vector<std::int64_t>()) c[static_cast<std::size_t>(id)] += 1;
  return c;
}
}  // namespace

TEST_CASE("data/impression_log: a purchase always follows a click; labels match the dataset") {
  const ImpressionLog log = impression_log({.rows = 20000, .users = 500, .items = 200, .seed = 3});
  REQUIRE(log.data.rows == 20000);
  CHECK(log.data.task_names == std::vector<std::string>{"click", "purchase"});
  const auto click = log.data.labels[0].to_vector<float>(), purchase = log.data.labels[1].to_vector<float>();
  double clicks = 0, purchases = 0;
  for (std::size_t r = 0; r < click.size(); ++r) {
    CHECK(purchase[r] <= click[r]);                                         // purchase implies click
    CHECK(log.purchase[r] == log.click[r] * log.converts[r]);               // and is click * converts
    CHECK(click[r] == static_cast<float>(log.click[r]));
    clicks += click[r], purchases += purchase[r];
  }
  CHECK(clicks > 0);
  CHECK(purchases > 0);
  CHECK(log.data.masks[1].to_vector<float>() == std::vector<float>(20000, 1.0f));
  CHECK(log.data.fields[0].spec.name == "user");
  CHECK(log.data.fields[0].spec.cardinality == 500);
  CHECK(log.data.fields[1].spec.cardinality == 200);
  // Seeded: the same seed gives the same log, another seed another.
  const ImpressionLog again = impression_log({.rows = 20000, .users = 500, .items = 200, .seed = 3});
  CHECK(again.p_click == log.p_click);
  CHECK(again.data.fields[0].ids.to_vector<std::int64_t>() == log.data.fields[0].ids.to_vector<std::int64_t>());
  CHECK(impression_log({.rows = 20000, .users = 500, .items = 200, .seed = 4}).p_click != log.p_click);
}

TEST_CASE("data/impression_log: ids follow the Zipf law asked for") {
  // P(id = k) ~ (k + 1)^-s: the count ratio of ids 0 and 1 is 2^s, of ids 0 and 3 is 4^s; the
  // least-squares slope of log count against log(k + 1) over the 20 most popular ids is -s.
  for (const double s : {0.8, 1.2}) {
    const ImpressionLog log = impression_log({.rows = 400000, .users = 1000, .items = 50, .user_zipf = s, .item_zipf = 1.0, .seed = 5});
    const std::vector<double> c = counts(log.data.fields[0].ids, 1000);
    CHECK(c[0] / c[1] == doctest::Approx(std::pow(2.0, s)).epsilon(0.03));
    CHECK(c[0] / c[3] == doctest::Approx(std::pow(4.0, s)).epsilon(0.05));
    double sx = 0, sy = 0, sxx = 0, sxy = 0;
    const int n = 20;
    for (int k = 0; k < n; ++k) {
      const double x = std::log(k + 1.0), y = std::log(c[static_cast<std::size_t>(k)]);
      sx += x, sy += y, sxx += x * x, sxy += x * y;
    }
    CHECK((n * sxy - sx * sy) / (n * sxx - sx * sx) == doctest::Approx(-s).epsilon(0.03));
    const std::vector<double> items = counts(log.data.fields[1].ids, 50);
    CHECK(items[0] / items[1] == doctest::Approx(2.0).epsilon(0.03));
  }
}

TEST_CASE("data/impression_log: clicks and conversions are drawn from the stated probabilities") {
  const ImpressionLog log = impression_log({.rows = 200000, .users = 2000, .items = 500, .seed = 7});
  // Within each tenth of p_click the click rate is the mean p_click there (a binomial's 4 sigma),
  // and the same for converts against p_convert; the purchase rate is the mean p_click * p_convert.
  for (const auto& [p, y] : {std::pair{&log.p_click, &log.click}, std::pair{&log.p_convert, &log.converts}}) {
    int bins_checked = 0;
    for (int b = 0; b < 10; ++b) {
      double n = 0, sum_p = 0, sum_y = 0;
      for (std::size_t r = 0; r < p->size(); ++r)
        if ((*p)[r] >= b / 10.0 && (*p)[r] < (b + 1) / 10.0) n += 1, sum_p += (*p)[r], sum_y += (*y)[r];
      if (n < 500) continue;
      const double mean_p = sum_p / n;
      CHECK(std::abs(sum_y / n - mean_p) < 4 * std::sqrt(mean_p * (1 - mean_p) / n));
      ++bins_checked;
    }
    CHECK(bins_checked >= 4);  // the probabilities spread over the range, not one value
  }
  double expected = 0, purchases = 0;
  for (std::size_t r = 0; r < log.p_click.size(); ++r) expected += log.p_click[r] * log.p_convert[r], purchases += log.purchase[r];
  const double n = static_cast<double>(log.p_click.size()), q = expected / n;
  CHECK(std::abs(purchases / n - q) < 4 * std::sqrt(q * (1 - q) / n));
  // The truth ranks better than chance: it is what the labels come from.
  CHECK(mtl::auc(log.p_click, log.click) > 0.65);
}

TEST_CASE("data/impression_log: bad options name the option") {
  CHECK(error_message([] { impression_log({.rows = -1}); }) == "impression_log: rows must be non-negative, got -1");
  CHECK(error_message([] { impression_log({.users = 0}); }) == "impression_log: users and items must be at least 1, got 0 and 20000");
  CHECK(error_message([] { impression_log({.user_zipf = 0}); }) ==
        "impression_log: Zipf exponents must be positive and finite, got 0 and 1.1");
  CHECK(error_message([] { impression_log({.factors = 0}); }) == "impression_log: factors must be at least 1, got 0");
  CHECK(error_message([] { impression_log({.correlation = 1.5}); }) ==
        "impression_log: correlation must be in [-1, 1], got 1.5");
  CHECK(impression_log({.rows = 0}).data.rows == 0);
}
