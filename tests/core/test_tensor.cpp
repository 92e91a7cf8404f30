#include <doctest/doctest.h>

#include <sstream>

#include "ladon.h"
#include "tests/helpers.h"

using namespace ladon;
using testing::values;

TEST_CASE("Shape: a vector of dims, six inline, growing to the heap beyond") {
  Shape s = {2, 3};
  CHECK(s.size() == 2);
  for (std::int64_t d = 4; d <= 9; ++d) s.push_back(d);  // 8 dims: past the inline six
  CHECK(s == Shape{2, 3, 4, 5, 6, 7, 8, 9});
  const Shape copy = s;
  Shape moved = std::move(s);
  CHECK(moved == copy);
  CHECK(s.empty());  // NOLINT: a moved-from Shape is empty
  s = copy;          // and usable again
  CHECK(s == copy);
  Shape small = {1, 2, 3};
  Shape small_moved = std::move(small);
  CHECK(small_moved == Shape{1, 2, 3});
  small_moved.insert(small_moved.begin() + 1, 7);
  CHECK(small_moved == Shape{1, 7, 2, 3});
  const Shape tail = {8, 9};
  small_moved.insert(small_moved.end(), tail.begin(), tail.end());
  CHECK(small_moved == Shape{1, 7, 2, 3, 8, 9});
  small_moved.erase(small_moved.begin());
  CHECK(small_moved == Shape{7, 2, 3, 8, 9});
  CHECK(Shape(3, 1) == Shape{1, 1, 1});
  const std::vector<std::int64_t> as_vector = copy;  // converts both ways
  CHECK(Shape(as_vector) == copy);
  CHECK(!(Shape{1, 2} == Shape{1, 2, 3}));
  CHECK(shape_str(Shape{}) == "[]");
}

TEST_CASE("creation") {
  CHECK(values(zeros({2, 2})) == std::vector<float>{0, 0, 0, 0});
  CHECK(values(full({3}, 2.5)) == std::vector<float>{2.5f, 2.5f, 2.5f});
  CHECK(arange(4).to_vector<std::int64_t>() == std::vector<std::int64_t>{0, 1, 2, 3});
  CHECK(values(arange(0.0, 1.0, 0.25)) == std::vector<float>{0, 0.25f, 0.5f, 0.75f});
  const Tensor s = scalar(3.0);
  CHECK(s.dim() == 0);
  CHECK(s.numel() == 1);
  CHECK(s.item() == 3.0);
  const Tensor t = tensor({1, 2, 3, 4, 5, 6}, {2, 3});
  CHECK(t.shape() == Shape{2, 3});
  CHECK(t.strides() == Shape{3, 1});
  CHECK(t.size(-1) == 3);
  CHECK_THROWS_WITH_AS(tensor({1, 2, 3}, {2, 2}), "tensor: 3 values do not fill shape [2, 2]", Error);
  CHECK_THROWS_WITH_AS(t.size(2), "size: dim 2 is out of range for a tensor of rank 2", Error);
  CHECK_THROWS_WITH_AS(t.data<std::int64_t>(), "data: tensor holds float32, requested int64", Error);
}

TEST_CASE("random tensors are reproducible by seed") {
  Generator a(7), b(7), c(8);
  CHECK(equal(randn({5}, a), randn({5}, b)));
  CHECK_FALSE(equal(randn({5}, a), randn({5}, c)));
  Generator g(1);
  const Tensor u = uniform({10000}, -1.0, 3.0, g);
  CHECK(max(u).item() < 3.0);
  CHECK(-max(neg(u)).item() >= -1.0);
  CHECK(mean(u).item() == doctest::Approx(1.0).epsilon(0.05));
  const Tensor n = randn({20000}, g);
  CHECK(mean(n).item() == doctest::Approx(0.0).epsilon(0.03));
  CHECK(mean(n * n).item() == doctest::Approx(1.0).epsilon(0.03));
  std::vector<std::int64_t> perm = randperm(50, g).to_vector<std::int64_t>();
  std::sort(perm.begin(), perm.end());
  CHECK(perm == arange(50).to_vector<std::int64_t>());
}

TEST_CASE("views share storage") {
  const Tensor t = arange(0.0, 6.0).reshape({2, 3});
  const Tensor tt = t.t();
  CHECK(tt.shape() == Shape{3, 2});
  CHECK(tt.strides() == Shape{1, 3});
  CHECK_FALSE(tt.is_contiguous());
  CHECK(values(tt) == std::vector<float>{0, 3, 1, 4, 2, 5});
  CHECK(tt.impl()->storage == t.impl()->storage);

  const Tensor row = t.narrow(0, 1, 1);
  CHECK(values(row) == std::vector<float>{3, 4, 5});
  CHECK(row.offset() == 3);
  const Tensor col = t.narrow(1, 2, 1);
  CHECK(values(col) == std::vector<float>{2, 5});

  const Tensor e = tensor({1, 2, 3}, {3}).expand({2, 3});
  CHECK(e.strides() == Shape{0, 1});
  CHECK(values(e) == std::vector<float>{1, 2, 3, 1, 2, 3});

  CHECK(t.unsqueeze(0).shape() == Shape{1, 2, 3});
  CHECK(t.unsqueeze(-1).shape() == Shape{2, 3, 1});
  CHECK(t.unsqueeze(1).squeeze(1).shape() == Shape{2, 3});
  CHECK(t.reshape({-1}).shape() == Shape{6});
  CHECK(t.permute({1, 0}).strides() == Shape{1, 3});
  CHECK(t.flatten().shape() == Shape{6});

  // reshape of a transposed tensor must copy; view must refuse.
  CHECK(values(tt.reshape({6})) == std::vector<float>{0, 3, 1, 4, 2, 5});
  CHECK_THROWS_WITH_AS(tt.view({6}),
                       "view: cannot view a tensor of shape [3, 2] with strides [1, 3] as [6] without a copy; use "
                       "reshape()",
                       Error);
  CHECK_THROWS_WITH_AS(t.reshape({4, 2}), "reshape: cannot reshape [2, 3] (6 elements) into [4, 2] (8 elements)", Error);
  CHECK_THROWS_WITH_AS(t.narrow(1, 2, 2), "narrow: start 2 and length 2 are out of bounds for dim 1 of size 3 in [2, 3]", Error);
  CHECK_THROWS_WITH_AS(t.expand({4, 4}), "expand: cannot expand [2, 3] to [4, 4] (dim 0)", Error);
  CHECK_THROWS_WITH_AS(t.permute({0, 0}), "permute: dim 0 appears twice in [0, 0]", Error);
}

TEST_CASE("printing") {
  std::ostringstream s;
  s << tensor({1, 2, 3, 4}, {2, 2});
  CHECK(s.str() == "Tensor([[1, 2],\n [3, 4]], shape=[2, 2], dtype=float32)");
  std::ostringstream big;
  big << arange(20);
  CHECK(big.str() ==
        "Tensor([0, 1, 2, 3, 4, 5, ..., 14, 15, 16, 17, 18, 19], shape=[20], dtype=int64)");
}

TEST_CASE("steady-state allocations come from the cache") {
  for (int i = 0; i < 3; ++i) (void)(ones({1000}) + ones({1000}));
  const AllocatorStats before = allocator_stats();
  for (int i = 0; i < 10; ++i) (void)(ones({1000}) + ones({1000}));
  CHECK(allocator_stats().system_allocations == before.system_allocations);
}

TEST_CASE("the allocator counts the storage bytes in use and their peak since a reset") {
  reset_peak_bytes();
  const AllocatorStats before = allocator_stats();
  CHECK(before.peak_bytes == before.live_bytes);
  constexpr std::size_t kBytes = 4096;  // 1024 floats: exactly one bucket, so no rounding up
  {
    const Tensor a = empty({1024});
    CHECK(allocator_stats().live_bytes == before.live_bytes + kBytes);
    {
      const Tensor b = empty({1024});
      const Tensor view = b.reshape({32, 32});  // a view shares b's storage: no new bytes
      CHECK(allocator_stats().live_bytes == before.live_bytes + 2 * kBytes);
    }
    CHECK(allocator_stats().live_bytes == before.live_bytes + kBytes);
    const Tensor c = empty({1024});  // a cache hit counts as in use again
    CHECK(allocator_stats().live_bytes == before.live_bytes + 2 * kBytes);
  }
  AllocatorStats after = allocator_stats();
  CHECK(after.live_bytes == before.live_bytes);
  CHECK(after.peak_bytes == before.live_bytes + 2 * kBytes);
  reset_peak_bytes();
  CHECK(allocator_stats().peak_bytes == before.live_bytes);

  // Tensors made and dropped on every worker thread at once leave the count where it was.
  parallel_for(0, 64, 1, [](std::int64_t lo, std::int64_t hi) {
    for (std::int64_t i = lo; i < hi; ++i) (void)(ones({1000 + i}) * 2.0);
  });
  after = allocator_stats();
  CHECK(after.live_bytes == before.live_bytes);
  CHECK(after.peak_bytes > before.live_bytes);
}
