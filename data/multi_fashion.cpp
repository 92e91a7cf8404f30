#include "multi_fashion.h"

#include <algorithm>
#include <array>

#include "fashion_mnist.h"

namespace ladon::data {
namespace {

constexpr const char* kOp = "multi_fashion";

}  // namespace

std::int64_t nearest_source(std::int64_t i, std::int64_t from, std::int64_t to) {
  // floor((i + 0.5) * from / to) = floor((2i + 1) * from / (2 to)); no float rounding at the edges.
  return (2 * i + 1) * from / (2 * to);
}

std::vector<std::uint8_t> compose_pair(std::span<const std::uint8_t> first, std::span<const std::uint8_t> second,
                                       PairGeometry geometry) {
  const std::int64_t side = geometry.side, offset = geometry.offset, canvas = geometry.canvas;
  LADON_CHECK(side >= 1 && offset >= 0 && canvas >= side + offset, "compose_pair",
              "needs side >= 1, offset >= 0 and canvas >= side + offset, got side ", side, ", offset ", offset,
              " and canvas ", canvas);
  const auto pixels = static_cast<std::size_t>(side * side);
  LADON_CHECK(first.size() == pixels && second.size() == pixels, "compose_pair", "images of ", side, " x ", side, " = ",
              pixels, " bytes expected, got ", first.size(), " and ", second.size());
  // The canvas: the elementwise maximum of the two placed images (Sener writes the second over
  // the first, then the maximum of both in the overlap: the same thing).
  std::vector<std::uint8_t> c(static_cast<std::size_t>(canvas * canvas), 0);
  for (std::int64_t r = 0; r < side; ++r)
    for (std::int64_t k = 0; k < side; ++k) {
      const auto src = static_cast<std::size_t>(r * side + k);
      std::uint8_t& a = c[static_cast<std::size_t>(r * canvas + k)];
      a = std::max(a, first[src]);
      std::uint8_t& b = c[static_cast<std::size_t>((r + offset) * canvas + k + offset)];
      b = std::max(b, second[src]);
    }
  // scipy's bytescale (inside imresize): (v - min) * 255 / (max - min), clipped, + 0.5, truncated.
  // The canvas minimum is 0 whenever it is larger than one item (a corner no item covers). A
  // constant canvas keeps a range of 1, as scipy does.
  const auto [lo_it, hi_it] = std::minmax_element(c.begin(), c.end());
  const double lo = *lo_it, range = *hi_it > *lo_it ? static_cast<double>(*hi_it - *lo_it) : 1.0;
  const double scale = 255.0 / range;
  std::array<std::uint8_t, 256> byte{};
  for (int v = 0; v < 256; ++v)
    byte[static_cast<std::size_t>(v)] = static_cast<std::uint8_t>(std::clamp((v - lo) * scale, 0.0, 255.0) + 0.5);
  // Pillow's NEAREST from canvas x canvas to side x side.
  std::vector<std::uint8_t> out(pixels);
  for (std::int64_t r = 0; r < side; ++r) {
    const std::int64_t sr = nearest_source(r, canvas, side);
    for (std::int64_t k = 0; k < side; ++k)
      out[static_cast<std::size_t>(r * side + k)] =
          byte[c[static_cast<std::size_t>(sr * canvas + nearest_source(k, canvas, side))]];
  }
  return out;
}

Dataset multi_pairs(const IdxArray& images, const IdxArray& labels, Generator& gen, const std::string& what) {
  LADON_CHECK(images.shape.size() == 3 && images.shape[1] == 28 && images.shape[2] == 28, kOp, what,
              ": expected images of shape [N, 28, 28], got ", shape_str(images.shape));
  LADON_CHECK(labels.shape.size() == 1, kOp, what, ": expected labels of shape [N], got ", shape_str(labels.shape));
  const std::int64_t n = images.shape[0];
  LADON_CHECK(n >= 1, kOp, what, ": the split is empty");
  LADON_CHECK(labels.shape[0] == n, kOp, what, ": ", n, " images but ", labels.shape[0], " labels");
  for (std::int64_t i = 0; i < n; ++i)
    LADON_CHECK(labels.bytes[static_cast<std::size_t>(i)] < 10, kOp, what, ": label ",
                int{labels.bytes[static_cast<std::size_t>(i)]}, " at row ", i, " is not in 0..9");

  std::array<float, 256> pixel{};
  for (int b = 0; b < 256; ++b)
    pixel[static_cast<std::size_t>(b)] = static_cast<float>((b / 255.0 - kFashionMnistMean) / kFashionMnistStd);
  constexpr std::size_t kPixels = 28 * 28;
  Dataset out;
  out.x = empty({n, 1, 28, 28});
  Tensor left = empty({n}, Dtype::int64), right = empty({n}, Dtype::int64);
  float* x = out.x.data<float>();
  std::int64_t* l = left.data<std::int64_t>();
  std::int64_t* r = right.data<std::int64_t>();
  const std::span<const std::uint8_t> all(images.bytes);
  Generator::Guard guard(gen);
  for (std::int64_t i = 0; i < n; ++i) {
    const auto j = static_cast<std::int64_t>(gen.below(static_cast<std::uint64_t>(n)));
    const std::vector<std::uint8_t> pair = compose_pair(all.subspan(static_cast<std::size_t>(i) * kPixels, kPixels),
                                                        all.subspan(static_cast<std::size_t>(j) * kPixels, kPixels));
    float* row = x + static_cast<std::size_t>(i) * kPixels;
    for (std::size_t p = 0; p < kPixels; ++p) row[p] = pixel[pair[p]];
    l[i] = labels.bytes[static_cast<std::size_t>(i)];
    r[i] = labels.bytes[static_cast<std::size_t>(j)];
  }
  out.y = {left, right};
  out.task_names = {"top_left", "bottom_right"};
  return out;
}

FashionMnist multi_fashion(const std::string& dir, MultiFashionOptions options) {
  Generator gen(options.seed);
  FashionMnist out;
  for (auto [split, prefix] : {std::pair{&out.train, "train"}, std::pair{&out.test, "t10k"}}) {
    const std::string images = fashion_mnist_file(dir, std::string(prefix) + "-images-idx3-ubyte");
    const std::string labels = fashion_mnist_file(dir, std::string(prefix) + "-labels-idx1-ubyte");
    *split = multi_pairs(read_idx(images), read_idx(labels), gen, "'" + images + "'");
  }
  return out;
}

}  // namespace ladon::data
