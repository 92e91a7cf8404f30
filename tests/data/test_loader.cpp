#include <doctest/doctest.h>

#include <algorithm>
#include <iterator>
#include <numeric>

#include "data/dataset.h"
#include "data/loader.h"
#include "ladon.h"

using namespace ladon;
using namespace ladon::data;

static_assert(std::input_iterator<Loader::Iterator>);

namespace {

// Row i has x = [3i, 3i+1, 3i+2], item label i, regression label -i: any mix-up of rows shows.
Dataset counting_dataset(std::int64_t n) {
  Dataset ds;
  ds.x = arange(0.0, static_cast<double>(3 * n), 1.0, Dtype::float32).reshape({n, 3});
  ds.y = {arange(n), arange(0.0, static_cast<double>(-n), -1.0, Dtype::float32).reshape({n, 1})};
  ds.task_names = {"id", "neg"};
  return ds;
}

// The row ids of one epoch, checking on the way that each batch's x and y rows agree.
std::vector<std::int64_t> epoch_ids(Loader& loader, std::vector<std::int64_t>* sizes = nullptr) {
  std::vector<std::int64_t> ids;
  for (auto& batch : loader) {
    const std::int64_t rows = batch.x.size(0);
    if (sizes) sizes->push_back(rows);
    REQUIRE(batch.y.size() == 2);
    CHECK(batch.x.shape() == Shape{rows, 3});
    CHECK(batch.y[0].shape() == Shape{rows});
    CHECK(batch.y[1].shape() == Shape{rows, 1});
    const auto x = batch.x.to_vector<float>();
    const auto id = batch.y[0].to_vector<std::int64_t>();
    const auto neg = batch.y[1].to_vector<float>();
    for (std::int64_t r = 0; r < rows; ++r) {
      const auto i = static_cast<std::size_t>(r);
      CHECK(x[3 * i] == static_cast<float>(3 * id[i]));
      CHECK(x[3 * i + 2] == static_cast<float>(3 * id[i] + 2));
      CHECK(neg[i] == static_cast<float>(-id[i]));
    }
    ids.insert(ids.end(), id.begin(), id.end());
  }
  return ids;
}

std::vector<std::int64_t> iota_ids(std::int64_t n) {
  std::vector<std::int64_t> v(static_cast<std::size_t>(n));
  std::iota(v.begin(), v.end(), std::int64_t{0});
  return v;
}

}  // namespace

TEST_CASE("data/loader: batch counts and sizes, with and without drop_last") {
  const Dataset ds = counting_dataset(10);
  CHECK(Loader(ds, {.batch = 4}).num_batches() == 3);
  CHECK(Loader(ds, {.batch = 4, .drop_last = true}).num_batches() == 2);
  CHECK(Loader(ds, {.batch = 5}).num_batches() == 2);
  CHECK(Loader(ds, {.batch = 5, .drop_last = true}).num_batches() == 2);
  CHECK(Loader(ds, {.batch = 20}).num_batches() == 1);
  CHECK(Loader(ds, {.batch = 20, .drop_last = true}).num_batches() == 0);
  CHECK(Loader(counting_dataset(0), {.batch = 3}).num_batches() == 0);

  Loader in_order(ds, {.batch = 4});
  std::vector<std::int64_t> sizes;
  CHECK(epoch_ids(in_order, &sizes) == iota_ids(10));
  CHECK(sizes == std::vector<std::int64_t>{4, 4, 2});

  Loader dropping(ds, {.batch = 4, .drop_last = true});
  sizes.clear();
  CHECK(epoch_ids(dropping, &sizes) == iota_ids(8));
  CHECK(sizes == std::vector<std::int64_t>{4, 4});

  Loader none(ds, {.batch = 20, .drop_last = true});
  CHECK(std::distance(none.begin(), none.end()) == 0);
}

TEST_CASE("data/loader: shuffled epochs cover every row once, differ, and reproduce by seed") {
  const Dataset ds = counting_dataset(100);
  Loader a(ds, {.batch = 16, .shuffle = true, .seed = 7});
  Loader b(ds, {.batch = 16, .shuffle = true, .seed = 7});
  Loader c(ds, {.batch = 16, .shuffle = true, .seed = 8});
  const auto a1 = epoch_ids(a), a2 = epoch_ids(a);
  const auto b1 = epoch_ids(b), b2 = epoch_ids(b);
  const auto c1 = epoch_ids(c);
  for (auto ids : {a1, a2, c1}) {
    std::sort(ids.begin(), ids.end());
    CHECK(ids == iota_ids(100));
  }
  CHECK(a1 != iota_ids(100));  // actually shuffled
  CHECK(a1 != a2);             // epochs differ
  CHECK(a1 == b1);             // same seed, same run
  CHECK(a2 == b2);
  CHECK(a1 != c1);

  // With drop_last the dropped rows change from epoch to epoch, but no row repeats.
  Loader d(ds, {.batch = 16, .shuffle = true, .drop_last = true, .seed = 7});
  auto d1 = epoch_ids(d);
  CHECK(d1.size() == 96);
  std::sort(d1.begin(), d1.end());
  CHECK(std::adjacent_find(d1.begin(), d1.end()) == d1.end());
}

TEST_CASE("data/loader: batches are copies, and the loader outlives its dataset") {
  Loader loader(counting_dataset(6), {.batch = 6});  // the dataset is a temporary
  auto it = loader.begin();
  it->x.data<float>()[0] = 99.0f;  // must not leak into the next epoch
  CHECK(loader.begin()->x.to_vector<float>()[0] == 0.0f);
}

TEST_CASE("data/loader: errors") {
  const Dataset ds = counting_dataset(10);
  CHECK_THROWS_WITH_AS(Loader(ds, {.batch = 0}), "Loader: batch must be positive, got 0", Error);
  CHECK_THROWS_WITH_AS(Loader(ds, {.batch = -3}), "Loader: batch must be positive, got -3", Error);
  Dataset bad = ds;
  bad.y[1] = zeros({9, 1});
  CHECK_THROWS_WITH_AS(Loader(bad, {}), "Loader: x has 10 rows (shape [10, 3]) but y[1] (task 'neg') has shape [9, 1]",
                       Error);
  bad = ds;
  bad.task_names = {"id"};
  CHECK_THROWS_WITH_AS(Loader(bad, {}), "Loader: dataset has 2 label tensors but 1 task names", Error);
  CHECK_THROWS_WITH_AS(Loader(Dataset{}, {}), "Loader: dataset has no inputs (x is undefined)", Error);
}

TEST_CASE("data/slice: row ranges as views") {
  const Dataset ds = counting_dataset(10);
  const Dataset part = slice(ds, 2, 5);
  CHECK(part.size() == 3);
  CHECK(part.task_names == ds.task_names);
  CHECK(part.x.to_vector<float>() == std::vector<float>{6, 7, 8, 9, 10, 11, 12, 13, 14});
  CHECK(part.y[0].to_vector<std::int64_t>() == std::vector<std::int64_t>{2, 3, 4});
  CHECK(part.y[1].to_vector<float>() == std::vector<float>{-2, -3, -4});
  CHECK(slice(ds, 10, 10).size() == 0);
  Loader loader(part, {.batch = 2});
  std::vector<std::int64_t> ids;
  for (auto& batch : loader)
    for (auto id : batch.y[0].to_vector<std::int64_t>()) ids.push_back(id);
  CHECK(ids == std::vector<std::int64_t>{2, 3, 4});
  CHECK_THROWS_WITH_AS(slice(ds, 4, 11), "slice: rows [4, 11) are not a range within a dataset of 10 rows", Error);
  CHECK_THROWS_WITH_AS(slice(ds, 5, 4), "slice: rows [5, 4) are not a range within a dataset of 10 rows", Error);
  CHECK_THROWS_WITH_AS(slice(ds, -1, 4), "slice: rows [-1, 4) are not a range within a dataset of 10 rows", Error);
}

TEST_CASE("data/Loader: begin_at with the generator's state from before an epoch resumes that epoch") {
  const Dataset ds = counting_dataset(10);
  Loader loader(ds, {.batch = 3, .shuffle = true, .seed = 4});
  for (auto& batch : loader) (void)batch;  // epoch 1
  const Generator::State before = loader.generator().state();
  std::vector<std::int64_t> epoch2;
  for (auto& batch : loader)
    for (auto id : batch.y[0].to_vector<std::int64_t>()) epoch2.push_back(id);
  loader.generator().set_state(before);
  std::vector<std::int64_t> tail;
  for (auto it = loader.begin_at(2); it != loader.end(); ++it)
    for (auto id : it->y[0].to_vector<std::int64_t>()) tail.push_back(id);
  CHECK(tail == std::vector<std::int64_t>(epoch2.begin() + 6, epoch2.end()));  // batches 2 and 3 of epoch 2
  CHECK(loader.begin_at(4) == loader.end());
  CHECK_THROWS_WITH_AS(loader.begin_at(5), "Loader::begin_at: batch 5 is not in 0..4", Error);
}
