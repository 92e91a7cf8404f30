// data defects from issue 11: a Loader with a batch near INT64_MAX, bad IDX files.
#include <doctest/doctest.h>

#include <limits>

#include "data/dataset.h"
#include "data/idx.h"
#include "data/loader.h"
#include "helpers.h"
#include "ladon.h"
#include "test_util.h"

using namespace ladon;
using namespace ladon::data;
using namespace ladon::data::test;
using namespace ladon::testing;

TEST_CASE("a Loader with a batch near INT64_MAX yields the one batch of every row") {
  Dataset ds;
  ds.x = zeros({5, 2});
  ds.y = {arange(5)};
  ds.task_names = {"id"};
  for (std::int64_t batch : {std::numeric_limits<std::int64_t>::max(), std::numeric_limits<std::int64_t>::max() - 1}) {
    Loader loader(ds, {.batch = batch});
    CHECK(loader.num_batches() == 1);
    std::int64_t seen = 0, rows = 0;
    for (auto& b : loader) {
      ++seen;
      rows += b.x.size(0);
      REQUIRE(seen < 3);  // the loop ends
    }
    CHECK(seen == 1);
    CHECK(rows == 5);
    Loader dropping(ds, {.batch = batch, .drop_last = true});
    CHECK(dropping.num_batches() == 0);
  }
}

TEST_CASE("data/idx: junk after a complete gzip stream is an error; a second gzip member is data") {
  TempDir dir;
  const std::string path = dir.file("j.idx.gz");
  const std::vector<std::uint8_t> data = {1, 2, 3, 4, 5, 6};
  write_gzip(path, idx_bytes({2, 3}, data));
  std::vector<std::uint8_t> bytes = read_plain(path);
  const std::vector<std::uint8_t> good = bytes;
  for (std::uint8_t junk : {0x00, 0x41, 0x1f}) {
    CAPTURE(int{junk});
    bytes = good;
    bytes.insert(bytes.end(), 5, junk);
    write_plain(path, bytes);
    CHECK_THROWS_WITH_AS(
        read_idx(path),
        ("read_idx: '" + path + "': trailing data after the gzip stream (5 bytes that are not another gzip member)")
            .c_str(),
        Error);
  }
  // Two members (as `cat a.gz b.gz` makes): the header and half the data, then the other half.
  const std::vector<std::uint8_t> whole = idx_bytes({2, 3}, data);
  write_gzip(path, std::vector<std::uint8_t>(whole.begin(), whole.begin() + 14));
  std::vector<std::uint8_t> two = read_plain(path);
  write_gzip(path, std::vector<std::uint8_t>(whole.begin() + 14, whole.end()));
  const std::vector<std::uint8_t> second = read_plain(path);
  two.insert(two.end(), second.begin(), second.end());
  write_plain(path, two);
  const IdxArray a = read_idx(path);
  CHECK(a.shape == Shape{2, 3});
  CHECK(a.bytes == data);
}
