#include <doctest/doctest.h>

#include "helpers.h"
#include "ladon.h"

using namespace ladon;
using ladon::testing::error_message;
using ladon::testing::set_values;

namespace {
nn::FeatureEmbedding small_front() {
  return nn::FeatureEmbedding({.fields = {{.name = "c", .kind = nn::FieldKind::categorical, .cardinality = 3, .width = 1},
                                          {.name = "x", .kind = nn::FieldKind::numeric, .cardinality = 0, .width = 2},
                                          {.name = "bag", .kind = nn::FieldKind::multi_categorical, .cardinality = 2, .width = 1}},
                               .dim = 2,
                               .dims = {{"bag", 1}},
                               .bag_mode = BagMode::sum});
}
}  // namespace

TEST_CASE("nn/feature_embedding: embeddings, numeric values and pooled bags concatenated in field order") {
  nn::FeatureEmbedding front = small_front();
  CHECK(front.out_dim() == 2 + 2 + 1);
  const auto named = front.named_parameters();
  REQUIRE(named.size() == 2);
  CHECK(named[0].first == "tables.c.weight");
  CHECK(named[1].first == "tables.bag.weight");
  set_values(front.table("c"), {1, 2, 3, 4, 5, 6});
  set_values(front.table("bag"), {10, 20});
  nn::Features f;
  f.set("bag", {.ids = tensor(std::vector<std::int64_t>{0, 1, 1}, {3}), .offsets = tensor(std::vector<std::int64_t>{0, 2}, {2}), .values = {}});
  f.set("c", {.ids = tensor(std::vector<std::int64_t>{2, 0}, {2}), .offsets = {}, .values = {}});
  f.set("x", {.ids = {}, .offsets = {}, .values = tensor(std::vector<float>{0.5f, -1, 7, 8}, {2, 2})});
  const Tensor out = front(f);
  CHECK(out.shape() == Shape{2, 5});
  // Row 0: c=2 -> (5, 6); x (0.5, -1); bag {0, 1} summed -> 30. Row 1: c=0 -> (1, 2); x (7, 8); bag {1} -> 20.
  CHECK(out.to_vector<float>() == std::vector<float>{5, 6, 0.5f, -1, 30, 1, 2, 7, 8, 20});
  sum(out).backward();
  // Table c: row 2 and row 0 looked up once each; bag: row 0 once, row 1 twice.
  CHECK(front.table("c").grad().to_vector<float>() == std::vector<float>{1, 1, 0, 0, 1, 1});
  CHECK(front.table("bag").grad().to_vector<float>() == std::vector<float>{1, 2});
}

TEST_CASE("nn/feature_embedding: bad fields and bad batches name the field") {
  CHECK(error_message([] { nn::FeatureEmbedding({}); }) == "FeatureEmbedding: no fields");
  CHECK(error_message([] {
          nn::FeatureEmbedding({.fields = {{.name = "a.b", .kind = nn::FieldKind::numeric, .cardinality = 0, .width = 1}}});
        }) == "FeatureEmbedding: field name 'a.b' must be non-empty without '.' (it becomes part of a parameter name)");
  CHECK(error_message([] {
          nn::FeatureEmbedding({.fields = {{.name = "a", .kind = nn::FieldKind::categorical, .cardinality = 0, .width = 1}}});
        }) == "FeatureEmbedding: categorical field 'a': cardinality must be positive, got 0");
  nn::FeatureEmbedding front = small_front();
  nn::Features f;
  f.set("c", {.ids = tensor(std::vector<std::int64_t>{3}, {1}), .offsets = {}, .values = {}});
  CHECK(error_message([&] { front(f); }) ==
        "FeatureEmbedding: field 'c': Embedding: index 3 is out of range for 3 embeddings");
  f.set("c", {.ids = tensor(std::vector<std::int64_t>{1}, {1}), .offsets = {}, .values = {}});
  CHECK(error_message([&] { front(f); }) == "Features: no field 'x' (fields: c)");
  f.set("x", {.ids = {}, .offsets = {}, .values = zeros({2, 2})});
  CHECK(error_message([&] { front(f); }) == "FeatureEmbedding: field 'x' has 2 rows, the fields before it 1");
}
