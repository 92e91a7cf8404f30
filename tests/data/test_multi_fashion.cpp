// MultiFashion (data/multi_fashion.h): the placement, the overlay by maximum, scipy's byte scaling
// and Pillow's nearest resize, each on images small enough to work out by hand; then whole splits
// (shapes, labels, determinism by seed) and bad input.
#include <doctest/doctest.h>

#include <filesystem>

#include "data/multi_fashion.h"
#include "helpers.h"
#include "ladon.h"
#include "test_util.h"

using namespace ladon;
using namespace ladon::data;
using namespace ladon::data::test;
using namespace ladon::testing;

namespace {

// A side x side image of zeros with the given (row, column, value) pixels.
std::vector<std::uint8_t> image(std::int64_t side, std::initializer_list<std::array<int, 3>> pixels) {
  std::vector<std::uint8_t> out(static_cast<std::size_t>(side * side), 0);
  for (const auto& [r, c, v] : pixels) out[static_cast<std::size_t>(r * side + c)] = static_cast<std::uint8_t>(v);
  return out;
}

IdxArray idx(Shape shape, std::vector<std::uint8_t> bytes) { return IdxArray{std::move(shape), std::move(bytes)}; }

float standardised(int byte) { return static_cast<float>((byte / 255.0 - kFashionMnistMean) / kFashionMnistStd); }

}  // namespace

TEST_CASE("multi_fashion: Pillow's nearest rule floor((i + 0.5) * from / to)") {
  // 6 -> 4: floor(0.75), floor(2.25), floor(3.75), floor(5.25).
  std::vector<std::int64_t> six_to_four;
  for (std::int64_t i = 0; i < 4; ++i) six_to_four.push_back(nearest_source(i, 6, 4));
  CHECK(six_to_four == std::vector<std::int64_t>{0, 2, 3, 5});
  // Sener's 36 -> 28: (2i + 1) * 9 / 14, never a tie; canvas rows 2, 6, 11, 15, 20, 24, 29 and 33 are skipped.
  std::vector<std::int64_t> sener;
  for (std::int64_t i = 0; i < 28; ++i) sener.push_back(nearest_source(i, 36, 28));
  CHECK(sener == std::vector<std::int64_t>{0,  1,  3,  4,  5,  7,  8,  9,  10, 12, 13, 14, 16, 17,
                                           18, 19, 21, 22, 23, 25, 26, 27, 28, 30, 31, 32, 34, 35});
}

TEST_CASE("multi_fashion: placement, overlay by maximum and resize, worked by hand on 4 x 4 items") {
  // Side 4, offset 2: a 6 x 6 canvas, first at rows/columns 0..3, second at 2..5; resized rows and
  // columns read canvas 0, 2, 3, 5.
  const auto first = image(4, {{0, 0, 255}, {2, 2, 200}, {3, 3, 40}});
  const auto second = image(4, {{0, 0, 100}, {1, 1, 90}, {1, 0, 33}, {3, 3, 77}, {2, 3, 5}});
  // Canvas: (0,0) 255; (2,2) max(200, 100) = 200; (3,3) max(40, 90) = 90; (3,2) 33; (5,5) 77;
  // (4,5) 5 sits on canvas row 4, which the resize skips.
  const auto out = compose_pair(first, second, {.side = 4, .offset = 2, .canvas = 6});
  CHECK(out == image(4, {{0, 0, 255}, {1, 1, 200}, {2, 2, 90}, {2, 1, 33}, {3, 3, 77}}));
  // The order matters: the first item is the top-left one. Swapped, the canvas holds 100 at (0,0),
  // 90 at (1,1) and 33 at (1,0) (row 1: skipped), 255 at (2,2), 5 at (2,3), max(77, 0) = 77 at (3,3),
  // 200 at (4,4) (skipped) and 40 at (5,5).
  CHECK(compose_pair(second, first, {.side = 4, .offset = 2, .canvas = 6}) ==
        image(4, {{0, 0, 100}, {1, 1, 255}, {1, 2, 5}, {2, 2, 77}, {3, 3, 40}}));
}

TEST_CASE("multi_fashion: a canvas whose maximum is below 255 is byte-scaled first, as scipy's imresize does") {
  // The same pair without the 255: the canvas maximum is 200, so v -> floor(v * 255 / 200 + 0.5):
  // 200 -> 255, 90 -> 115 (114.75), 77 -> 98 (98.175), 33 -> 42 (42.075).
  const auto first = image(4, {{2, 2, 200}, {3, 3, 40}});
  const auto second = image(4, {{0, 0, 100}, {1, 1, 90}, {1, 0, 33}, {3, 3, 77}});
  CHECK(compose_pair(first, second, {.side = 4, .offset = 2, .canvas = 6}) ==
        image(4, {{1, 1, 255}, {2, 2, 115}, {2, 1, 42}, {3, 3, 98}}));
  // An all-black canvas stays black (scipy keeps a range of 1 when max == min).
  CHECK(compose_pair(image(4, {}), image(4, {}), {.side = 4, .offset = 2, .canvas = 6}) == image(4, {}));
}

TEST_CASE("multi_fashion: Sener's geometry, 28 x 28 items offset by 6 on a 36 x 36 canvas") {
  // First's (27,27) is canvas (27,27), read by output 21 (21.5 * 36 / 28 = 27.64). Second's (1,1)
  // is canvas (7,7), read by output 5 (7.07); second's (0,0) is canvas (6,6), which no output reads.
  const auto first = image(28, {{27, 27, 255}, {0, 0, 60}});
  const auto second = image(28, {{0, 0, 128}, {1, 1, 129}, {27, 27, 30}});
  // Second's (27,27) lands on canvas (33,33), which no output reads either (25 reads 32, 26 reads 34).
  CHECK(compose_pair(first, second) == image(28, {{21, 21, 255}, {0, 0, 60}, {5, 5, 129}}));
  // Second's (26,26) is canvas (32,32), read by output 25.
  CHECK(compose_pair(first, image(28, {{26, 26, 70}})) == image(28, {{21, 21, 255}, {0, 0, 60}, {25, 25, 70}}));
}

TEST_CASE("multi_fashion: splits of pairs, labels, standardised pixels, determinism by seed") {
  // 12 items; item k is filled with byte 20 * (k + 1) and has label k % 10.
  const std::int64_t n = 12;
  std::vector<std::uint8_t> bytes, labels;
  for (std::int64_t k = 0; k < n; ++k) {
    bytes.insert(bytes.end(), 784, static_cast<std::uint8_t>(20 * (k + 1)));
    labels.push_back(static_cast<std::uint8_t>(k % 10));
  }
  const IdxArray images = idx({n, 28, 28}, bytes), lab = idx({n}, labels);
  Generator gen(5);
  const Dataset d = multi_pairs(images, lab, gen);
  CHECK(d.x.shape() == Shape{n, 1, 28, 28});
  CHECK(d.task_names == std::vector<std::string>{"top_left", "bottom_right"});
  REQUIRE(d.y.size() == 2);
  const auto left = d.y[0].to_vector<std::int64_t>(), right = d.y[1].to_vector<std::int64_t>();
  const auto x = d.x.to_vector<float>();
  const std::span<const std::uint8_t> all(bytes);
  int partners_differ = 0;
  for (std::int64_t i = 0; i < n; ++i) {
    CHECK(left[static_cast<std::size_t>(i)] == i % 10);
    // Find the partner: the item whose pair with i gives row i (each item's fill is unique).
    std::int64_t found = -1;
    for (std::int64_t j = 0; j < n && found < 0; ++j) {
      const auto pair = compose_pair(all.subspan(static_cast<std::size_t>(i) * 784, 784),
                                     all.subspan(static_cast<std::size_t>(j) * 784, 784));
      bool same = true;
      for (std::size_t p = 0; p < 784 && same; ++p)
        same = x[static_cast<std::size_t>(i) * 784 + p] == standardised(pair[p]);
      if (same) found = j;
    }
    REQUIRE(found >= 0);
    CHECK(right[static_cast<std::size_t>(i)] == found % 10);
    partners_differ += found != i;
  }
  CHECK(partners_differ > 0);
  // The same seed gives the same split; another seed other partners.
  Generator again(5), other(6);
  const Dataset d2 = multi_pairs(images, lab, again), d3 = multi_pairs(images, lab, other);
  CHECK(d2.x.to_vector<float>() == x);
  CHECK(d2.y[1].to_vector<std::int64_t>() == right);
  CHECK(d3.x.to_vector<float>() != x);
}

TEST_CASE("multi_fashion: bad input names the problem") {
  Generator gen(1);
  CHECK_THROWS_WITH_AS(compose_pair(image(4, {}), image(3, {}), {.side = 4, .offset = 2, .canvas = 6}),
                       "compose_pair: images of 4 x 4 = 16 bytes expected, got 16 and 9", Error);
  CHECK_THROWS_WITH_AS(
      compose_pair(image(4, {}), image(4, {}), {.side = 4, .offset = -1, .canvas = 6}),
      "compose_pair: needs side >= 1, offset >= 0 and canvas >= side + offset, got side 4, offset -1 and canvas 6",
      Error);
  CHECK_THROWS_WITH_AS(
      compose_pair(image(4, {}), image(4, {}), {.side = 4, .offset = 2, .canvas = 5}),
      "compose_pair: needs side >= 1, offset >= 0 and canvas >= side + offset, got side 4, offset 2 and canvas 5",
      Error);
  CHECK_THROWS_WITH_AS(multi_pairs(idx({2, 28, 27}, std::vector<std::uint8_t>(2 * 28 * 27)), idx({2}, {0, 1}), gen),
                       "multi_fashion: images: expected images of shape [N, 28, 28], got [2, 28, 27]", Error);
  CHECK_THROWS_WITH_AS(multi_pairs(idx({2, 28, 28}, std::vector<std::uint8_t>(2 * 784)), idx({3}, {0, 1, 2}), gen),
                       "multi_fashion: images: 2 images but 3 labels", Error);
  CHECK_THROWS_WITH_AS(multi_pairs(idx({2, 28, 28}, std::vector<std::uint8_t>(2 * 784)), idx({2}, {0, 10}), gen),
                       "multi_fashion: images: label 10 at row 1 is not in 0..9", Error);
  CHECK_THROWS_WITH_AS(multi_pairs(idx({0, 28, 28}, {}), idx({0}, {}), gen),
                       "multi_fashion: images: the split is empty", Error);
  CHECK_THROWS_WITH_AS(multi_pairs(idx({2, 28, 28}, std::vector<std::uint8_t>(2 * 784)), idx({2, 1}, {0, 1}), gen),
                       "multi_fashion: images: expected labels of shape [N], got [2, 1]", Error);
  const std::string missing = error_message([] { multi_fashion("/nonexistent/multi"); });
  CHECK(contains(missing, "fashion_mnist: directory '/nonexistent/multi' does not exist"));
  CHECK(contains(missing, "apt-get install dataset-fashion-mnist"));
}

TEST_CASE("multi_fashion: the real splits from Fashion-MNIST (skipped without dataset-fashion-mnist)") {
  const char* dir = "/usr/share/datasets/fashion-mnist";
  if (!std::filesystem::exists(dir)) {
    MESSAGE("skipped: ", dir, " is absent (apt-get install dataset-fashion-mnist)");
    return;
  }
  const FashionMnist mf = multi_fashion(dir, {.seed = 1});
  CHECK(mf.train.x.shape() == Shape{60000, 1, 28, 28});
  CHECK(mf.test.x.shape() == Shape{10000, 1, 28, 28});
  // Top-left labels are the split's own, in order.
  const FashionMnist fm = fashion_mnist(dir);
  CHECK(mf.train.y[0].to_vector<std::int64_t>() == fm.train.y[0].to_vector<std::int64_t>());
  CHECK(mf.test.y[0].to_vector<std::int64_t>() == fm.test.y[0].to_vector<std::int64_t>());
  // Bottom-right labels are drawn: about uniform over the 10 classes.
  std::vector<int> counts(10, 0);
  for (std::int64_t c : mf.train.y[1].to_vector<std::int64_t>()) ++counts[static_cast<std::size_t>(c)];
  for (int c : counts) CHECK((c > 5500 && c < 6500));
}
