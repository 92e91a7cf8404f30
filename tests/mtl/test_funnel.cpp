#include <doctest/doctest.h>

#include <cmath>

#include "helpers.h"
#include "ladon.h"

using namespace ladon;
using ladon::testing::error_message;

TEST_CASE("mtl/funnel: ESMM loss and gradients match the worked example (pCTR 0.5, pCVR 0.2)") {
  // Three impressions: click without conversion, no click, click and conversion.
  const double b0 = std::log(0.2 / 0.8);
  Tensor a = zeros({3, 1}).requires_grad_();
  Tensor b = full({3, 1}, b0).requires_grad_();
  const Tensor click = tensor(std::vector<float>{1, 0, 1}, {3, 1}), conv = tensor(std::vector<float>{0, 0, 1}, {3, 1});
  const Tensor loss = mtl::esmm_loss(a, b, click, conv);
  // L_ctr: log 2 each; L_ctcvr: -log 0.9 twice and -log 0.1; both batch means.
  CHECK(loss.item() == doctest::Approx(std::log(2.0) + (2 * 0.105361 + 2.302585) / 3).epsilon(1e-5));
  CHECK(mtl::ctcvr_probability(a, b).to_vector<float>()[0] == doctest::Approx(0.1));
  loss.backward();
  const auto ga = a.grad().to_vector<float>(), gb = b.grad().to_vector<float>();
  // The table's per-impression gradients, each divided by the batch of 3 (both losses are means).
  CHECK(gb[0] == doctest::Approx(0.088889 / 3).epsilon(1e-4));
  CHECK(gb[1] == doctest::Approx(0.088889 / 3).epsilon(1e-4));
  CHECK(gb[2] == doctest::Approx(-0.8 / 3).epsilon(1e-4));
  CHECK(ga[0] == doctest::Approx(-0.444444 / 3).epsilon(1e-4));
  CHECK(ga[1] == doctest::Approx(0.555556 / 3).epsilon(1e-4));
  CHECK(ga[2] == doctest::Approx(-1.0 / 3).epsilon(1e-4));
  CHECK(error_message([&] { mtl::esmm_loss(a, b, zeros({3, 1}), conv); }) == "esmm_loss: impression 2 converts without a click");
  mtl::ESMM model({.in = 4, .tower_hidden = {8}});
  const auto out = model(randn({5, 4}));
  CHECK(out.size() == 2);
  CHECK(out[1].shape() == Shape{5, 1});
  CHECK(model.owner_task("towers.cvr.0.weight") == 1);
}

TEST_CASE("mtl/funnel: AIT and the calibrator match the worked example") {
  mtl::AITM model({.in = 3, .tower_hidden = {2},
                   .tasks = {{.name = "click", .out = 1, .tower_hidden = {}, .kind = mtl::TaskKind::binary},
                             {.name = "buy", .out = 1, .tower_hidden = {}, .kind = mtl::TaskKind::binary}}});
  for (nn::Linear* h : {&model.h1, &model.h2, &model.h3}) ladon::testing::set_values(h->weight, {1, 0, 0, 1});
  const Tensor z = model.ait(tensor(std::vector<float>{1, 0}, {1, 2}), tensor(std::vector<float>{0, 2}, {1, 2}));
  // Scores 1/sqrt 2 and 4/sqrt 2 -> weights (0.107042, 0.892958); z = (0.107042, 1.785916).
  CHECK(z.to_vector<float>()[0] == doctest::Approx(0.107042).epsilon(1e-5));
  CHECK(z.to_vector<float>()[1] == doctest::Approx(1.785916).epsilon(1e-5));
  // Calibrator: p_click 0.3, p_buy 0.4, alpha 0.6 -> 0.06; gradient -alpha/B on click, +alpha/B on buy.
  const auto logit = [](double p) { return std::log(p / (1 - p)); };
  Tensor lc = full({1, 1}, logit(0.3)).requires_grad_(), lb = full({1, 1}, logit(0.4)).requires_grad_();
  const Tensor c = mtl::aitm_calibration({lc, lb}, 0.6);
  CHECK(c.item() == doctest::Approx(0.06).epsilon(1e-5));
  c.backward();
  CHECK(lb.grad().item() == doctest::Approx(0.6 * 0.4 * 0.6).epsilon(1e-5));  // alpha * sigmoid'(logit) at 0.4
  CHECK(lc.grad().item() == doctest::Approx(-0.6 * 0.3 * 0.7).epsilon(1e-5));
  const Tensor none = mtl::aitm_calibration({lb, lc}, 0.6);  // buy before click: not violated
  CHECK(none.item() == 0.0);
  const auto out = model(randn({4, 3}));
  CHECK(out.size() == 2);
  CHECK(model.transfer_weights(1).shape() == Shape{4, 2});
  CHECK(model.owner_task("transfers.buy.0.weight") == 1);
  CHECK(model.owner_task("ait.h1.weight") == -1);
}
