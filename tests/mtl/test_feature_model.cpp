#include <doctest/doctest.h>

#include "ladon.h"

using namespace ladon;

TEST_CASE("mtl/feature_model: the front's tables are shared parameters; the inner towers stay the tasks'") {
  Generator gen(5);
  nn::FeatureEmbedding front({.fields = {{.name = "c", .kind = nn::FieldKind::categorical, .cardinality = 4, .width = 1},
                                         {.name = "x", .kind = nn::FieldKind::numeric, .cardinality = 0, .width = 1}},
                              .dim = 3},
                             gen);
  const std::int64_t in = front.out_dim();
  const std::vector<mtl::TaskSpec> tasks = {{.name = "a", .out = 1, .tower_hidden = {4}, .kind = mtl::TaskKind::binary},
                                            {.name = "b", .out = 1, .tower_hidden = {4}, .kind = mtl::TaskKind::binary}};
  mtl::FeatureModel model(std::move(front), mtl::MMoE({.in = in, .experts = 2, .expert_hidden = {5}, .tasks = tasks}, gen));
  CHECK(model.owner_task("front.tables.c.weight") == -1);
  bool table_shared = false;
  for (const Tensor& p : model.shared_parameters()) table_shared = table_shared || p.same(model.front().table("c"));
  CHECK(table_shared);
  for (const auto& [name, p] : model.named_parameters()) {
    CAPTURE(name);
    if (name.rfind("model.towers.a.", 0) == 0) CHECK(model.owner_task(name) == 0);
    if (name.rfind("model.towers.b.", 0) == 0) CHECK(model.owner_task(name) == 1);
  }
  nn::Features f;
  f.set("c", {.ids = tensor(std::vector<std::int64_t>{0, 3, 1}, {3}), .offsets = {}, .values = {}});
  f.set("x", {.ids = {}, .offsets = {}, .values = tensor(std::vector<float>{1, 2, 3}, {3, 1})});
  const auto out = model(f);
  REQUIRE(out.size() == 2);
  // The same as embedding by hand and calling the inner model.
  const auto direct = model.inner<mtl::MMoE>()(model.front()(f));
  CHECK(out[0].to_vector<float>() == direct[0].to_vector<float>());
  CHECK(out[1].to_vector<float>() == direct[1].to_vector<float>());
  CHECK(model.representation().size() == model.inner<mtl::MMoE>().representation().size());
  const Tensor loss = mtl::task_loss(model.tasks()[0], out[0], ones({3, 1})) + mtl::task_loss(model.tasks()[1], out[1], zeros({3, 1}));
  loss.backward();
  // Rows 0, 3 and 1 of the table were looked up; row 2 was not.
  const auto g = model.front().table("c").grad().to_vector<float>();
  for (int k = 0; k < 3; ++k) CHECK(g[2 * 3 + k] == 0.0f);
  CHECK(g[0] != 0.0f);
}
