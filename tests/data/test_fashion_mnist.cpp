#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>

#include "data/fashion_mnist.h"
#include "helpers.h"
#include "ladon.h"
#include "test_util.h"

using namespace ladon;
using namespace ladon::data;
using namespace ladon::data::test;
using namespace ladon::testing;

namespace {

constexpr const char* kRealDir = "/usr/share/datasets/fashion-mnist";

// Writes a tiny Fashion-MNIST look-alike: image i is filled with byte pixel[i], label label[i].
// The train split is gzip, the test split plain, to exercise both names.
void write_fake(const TempDir& dir, const std::vector<std::uint8_t>& pixel, const std::vector<std::uint8_t>& label,
                const std::vector<std::uint8_t>& test_label = {3}) {
  std::vector<std::uint8_t> images;
  for (std::uint8_t p : pixel) images.insert(images.end(), 784, p);
  const auto n = static_cast<std::uint32_t>(pixel.size());
  write_gzip(dir.file("train-images-idx3-ubyte.gz"), idx_bytes({n, 28, 28}, images));
  write_gzip(dir.file("train-labels-idx1-ubyte.gz"), idx_bytes({static_cast<std::uint32_t>(label.size())}, label));
  write_plain(dir.file("t10k-images-idx3-ubyte"), idx_bytes({1, 28, 28}, std::vector<std::uint8_t>(784, 255)));
  write_plain(dir.file("t10k-labels-idx1-ubyte"),
              idx_bytes({static_cast<std::uint32_t>(test_label.size())}, test_label));
}

float standardised(int byte) { return static_cast<float>((byte / 255.0 - 0.2860) / 0.3530); }

}  // namespace

TEST_CASE("data/fashion_mnist: a small look-alike directory") {
  TempDir dir;
  std::vector<std::uint8_t> pixel, label;
  for (std::uint8_t i = 0; i < 10; ++i) {
    pixel.push_back(static_cast<std::uint8_t>(i * 28));
    label.push_back(i);
  }
  write_fake(dir, pixel, label);
  const FashionMnist fm = fashion_mnist(dir.path().string());
  CHECK(fm.train.size() == 10);
  CHECK(fm.test.size() == 1);
  CHECK(fm.train.x.shape() == Shape{10, 784});
  CHECK(fm.train.task_names == std::vector<std::string>{"item", "group"});
  REQUIRE(fm.train.y.size() == 2);
  CHECK(fm.train.y[0].dtype() == Dtype::int64);
  CHECK(fm.train.y[0].to_vector<std::int64_t>() == std::vector<std::int64_t>{0, 1, 2, 3, 4, 5, 6, 7, 8, 9});
  // T-shirt, Trouser, Pullover, Dress, Coat, Sandal, Shirt, Sneaker, Bag, Ankle boot.
  CHECK(fm.train.y[1].to_vector<std::int64_t>() == std::vector<std::int64_t>{0, 1, 0, 0, 0, 2, 0, 2, 3, 2});
  const auto x = fm.train.x.to_vector<float>();
  for (std::size_t i = 0; i < 10; ++i) {
    CHECK(x[784 * i] == doctest::Approx(standardised(pixel[i])));
    CHECK(x[784 * i + 783] == doctest::Approx(standardised(pixel[i])));
  }
  CHECK(fm.test.x.to_vector<float>()[0] == doctest::Approx((1.0 - 0.2860) / 0.3530));
  CHECK(fm.test.y[1].to_vector<std::int64_t>() == std::vector<std::int64_t>{0});
}

TEST_CASE("data/fashion_mnist: errors") {
  const std::string missing = "/nonexistent/fashion-mnist";
  CHECK_THROWS_WITH_AS(
      fashion_mnist(missing),
      "fashion_mnist: directory '/nonexistent/fashion-mnist' does not exist; install the Debian package "
      "dataset-fashion-mnist (apt-get install dataset-fashion-mnist) or pass the path of a directory "
      "holding the four Fashion-MNIST IDX files",
      Error);

  TempDir empty_dir;
  const std::string empty_msg = error_message([&] { fashion_mnist(empty_dir.path().string()); });
  CHECK(contains(empty_msg, "fashion_mnist: neither '" + empty_dir.file("train-images-idx3-ubyte.gz") + "' nor '" +
                                empty_dir.file("train-images-idx3-ubyte") + "' exists; install the Debian package"));

  TempDir count;
  write_fake(count, {1, 2, 3}, {1, 2});
  CHECK_THROWS_WITH_AS(fashion_mnist(count.path().string()),
                       ("fashion_mnist: '" + count.file("train-images-idx3-ubyte.gz") + "' holds 3 images but '" +
                        count.file("train-labels-idx1-ubyte.gz") + "' holds 2 labels")
                           .c_str(),
                       Error);

  TempDir label;
  write_fake(label, {1, 2}, {1, 2}, {4, 10});
  write_plain(label.file("t10k-images-idx3-ubyte"), idx_bytes({2, 28, 28}, std::vector<std::uint8_t>(2 * 784)));
  CHECK_THROWS_WITH_AS(
      fashion_mnist(label.path().string()),
      ("fashion_mnist: '" + label.file("t10k-labels-idx1-ubyte") + "': label 10 at row 1 is not in 0..9").c_str(),
      Error);

  TempDir shape;
  write_fake(shape, {1}, {1});
  write_gzip(shape.file("train-images-idx3-ubyte.gz"), idx_bytes({1, 784}, std::vector<std::uint8_t>(784)));
  CHECK_THROWS_WITH_AS(fashion_mnist(shape.path().string()),
                       ("fashion_mnist: '" + shape.file("train-images-idx3-ubyte.gz") +
                        "': expected images of shape [N, 28, 28], got [1, 784]")
                           .c_str(),
                       Error);
}

TEST_CASE("data/fashion_mnist: the installed data set") {
  if (!std::filesystem::is_directory(kRealDir)) {
    MESSAGE("skipped: ", kRealDir, " is not installed (Debian package dataset-fashion-mnist)");
    return;
  }
  const FashionMnist fm = fashion_mnist(kRealDir);
  CHECK(fm.train.x.shape() == Shape{60000, 784});
  CHECK(fm.test.x.shape() == Shape{10000, 784});
  for (const Dataset* ds : {&fm.train, &fm.test}) {
    const auto item = ds->y[0].to_vector<std::int64_t>();
    const auto group = ds->y[1].to_vector<std::int64_t>();
    REQUIRE(item.size() == static_cast<std::size_t>(ds->size()));
    // Balanced: every class holds a tenth of each split.
    std::vector<std::int64_t> per_class(10);
    bool in_range = true, groups_match = true;
    for (std::size_t i = 0; i < item.size(); ++i) {
      in_range = item[i] >= 0 && item[i] < 10;
      if (!in_range) break;
      ++per_class[static_cast<std::size_t>(item[i])];
      groups_match &= group[i] == kFashionMnistGroup[static_cast<std::size_t>(item[i])];
    }
    CHECK(in_range);
    CHECK(groups_match);
    CHECK(std::all_of(per_class.begin(), per_class.end(), [&](std::int64_t c) { return c == ds->size() / 10; }));
  }
  // Known first labels: Ankle boot, T-shirt, T-shirt, Dress, T-shirt, Pullover, Sneaker.
  const auto first = fm.train.y[0].narrow(0, 0, 7).to_vector<std::int64_t>();
  CHECK(first == std::vector<std::int64_t>{9, 0, 0, 3, 0, 2, 7});
  CHECK(fm.train.y[1].narrow(0, 0, 7).to_vector<std::int64_t>() == std::vector<std::int64_t>{2, 0, 0, 0, 0, 0, 2});
  CHECK(fm.test.y[0].narrow(0, 0, 3).to_vector<std::int64_t>() == std::vector<std::int64_t>{9, 2, 1});
  CHECK(fm.test.y[1].narrow(0, 0, 3).to_vector<std::int64_t>() == std::vector<std::int64_t>{2, 0, 1});
  // Standardised with the training statistics: mean 0 and std 1 over the training pixels.
  const Tensor x = fm.train.x;
  CHECK(std::abs(mean(x).item()) < 0.01);
  CHECK(std::abs(std::sqrt(mean(x * x).item()) - 1.0) < 0.01);
  const auto row = x.narrow(0, 0, 1).to_vector<float>();
  const auto [lo, hi] = std::minmax_element(row.begin(), row.end());
  CHECK(*lo >= standardised(0) - 1e-5f);
  CHECK(*hi <= standardised(255) + 1e-5f);
}
