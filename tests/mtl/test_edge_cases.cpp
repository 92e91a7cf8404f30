// mtl defects from issue 11: bad scores, widths and sizes give a clear ladon::Error.
#include <doctest/doctest.h>

#include <cmath>
#include <limits>

#include "ladon.h"

using namespace ladon;

TEST_CASE("PerformanceWeighted rejects a NaN or infinite score and keeps its weights") {
  mtl::PerformanceWeighted pw(2);
  pw.report_score(0, 0.5);
  pw.report_score(1, 0.25);
  const std::vector<double> before = pw.weights();
  CHECK_THROWS_WITH_AS(pw.report_score(1, std::numeric_limits<double>::quiet_NaN()),
                       "PerformanceWeighted: score for head 1 must be finite, got nan", Error);
  CHECK_THROWS_WITH_AS(pw.report_score(0, std::numeric_limits<double>::infinity()),
                       "PerformanceWeighted: score for head 0 must be finite, got inf", Error);
  CHECK(pw.weights() == before);
  CHECK(std::isfinite(before[0]));
}

TEST_CASE("expert and tower hidden sizes of 0 or below name the part and the sizes") {
  CHECK_THROWS_WITH_AS(mtl::MMoE({.in = 4, .experts = 2, .expert_hidden = {0}, .tasks = {{"a", 2, {3}}}}),
                       "ExpertBank: expert hidden sizes [0]: each must be positive", Error);
  CHECK_THROWS_WITH_AS(mtl::MMoE({.in = 4, .experts = 2, .expert_hidden = {8, -4}, .tasks = {{"a", 2, {3}}}}),
                       "ExpertBank: expert hidden sizes [8, -4]: each must be positive", Error);
  CHECK_THROWS_WITH_AS(mtl::MMoE({.in = 4, .experts = 2, .expert_hidden = {8}, .tasks = {{"a", 2, {-4}}}}),
                       "MultiTaskModel: task 'a' has a tower layer of size -4", Error);
  CHECK_THROWS_WITH_AS(mtl::mlp(3, {5, 0}, 2, false), "mlp: hidden sizes [5, 0]: each must be positive", Error);
}

TEST_CASE("a FusionAggregator fed outputs of the wrong width says so") {
  Generator gen(1);
  mtl::FusionAggregator fusion(2, 3, 4, 1, gen);
  CHECK(fusion({ones({5, 3}), ones({5, 3})}).shape() == Shape{5, 1});
  CHECK_THROWS_WITH_AS(fusion({ones({5, 4}), ones({5, 4})}),
                       "FusionAggregator: outputs of width 4 for a fusion network built for width 3", Error);
  CHECK_THROWS_WITH_AS(mtl::FusionAggregator(2, 0, 4, 1, gen),
                       "FusionAggregator: sizes must be positive, got count=2 dim=0 hidden=4 out=1", Error);
}

TEST_CASE("MagnitudePruner with no parameters is an error") {
  CHECK_THROWS_WITH_AS(mtl::MagnitudePruner({}, 0.5), "MagnitudePruner: needs at least one parameter to prune, got none",
                       Error);
}

TEST_CASE("drop_unused_experts when every expert is unused is an error that changes nothing") {
  Generator gen(2);
  mtl::MMoE model({.in = 4, .experts = 3, .expert_hidden = {5}, .tasks = {{"a", 2, {2}}, {"b", 2, {2}}}}, gen);
  mtl::GateStats none;
  none.mean_weight = {0.0, 0.0, 0.0};
  const std::int64_t params = model.num_parameters();
  CHECK_THROWS_WITH_AS(model.drop_unused_experts({none, none}),
                       "drop_unused_experts: all 3 experts are unused by every task; dropping them would leave none",
                       Error);
  CHECK(model.num_experts() == 3);
  CHECK(model.num_parameters() == params);
}
