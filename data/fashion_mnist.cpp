#include "fashion_mnist.h"

#include <array>
#include <filesystem>

#include "idx.h"

namespace ladon::data {
namespace {

constexpr const char* kOp = "fashion_mnist";
constexpr const char* kHowToGet =
    "install the Debian package dataset-fashion-mnist (apt-get install dataset-fashion-mnist) or pass the "
    "path of a directory holding the four Fashion-MNIST IDX files";

Dataset load_split(const std::string& dir, const std::string& prefix) {
  const std::string images_path = fashion_mnist_file(dir, prefix + "-images-idx3-ubyte");
  const std::string labels_path = fashion_mnist_file(dir, prefix + "-labels-idx1-ubyte");
  const IdxArray images = read_idx(images_path);
  const IdxArray labels = read_idx(labels_path);
  LADON_CHECK(images.shape.size() == 3 && images.shape[1] == 28 && images.shape[2] == 28, kOp, "'", images_path,
              "': expected images of shape [N, 28, 28], got ", shape_str(images.shape));
  LADON_CHECK(labels.shape.size() == 1, kOp, "'", labels_path, "': expected labels of shape [N], got ",
              shape_str(labels.shape));
  const std::int64_t n = images.shape[0];
  LADON_CHECK(labels.shape[0] == n, kOp, "'", images_path, "' holds ", n, " images but '", labels_path, "' holds ",
              labels.shape[0], " labels");

  // A 256-entry table maps each byte straight to its standardised value.
  std::array<float, 256> pixel{};
  for (int b = 0; b < 256; ++b)
    pixel[static_cast<std::size_t>(b)] = static_cast<float>((b / 255.0 - kFashionMnistMean) / kFashionMnistStd);

  Dataset out;
  out.x = empty({n, 784});
  float* x = out.x.data<float>();
  for (std::size_t i = 0; i < images.bytes.size(); ++i) x[i] = pixel[images.bytes[i]];

  Tensor item = empty({n}, Dtype::int64);
  Tensor group = empty({n}, Dtype::int64);
  std::int64_t* item_p = item.data<std::int64_t>();
  std::int64_t* group_p = group.data<std::int64_t>();
  for (std::int64_t i = 0; i < n; ++i) {
    const std::uint8_t label = labels.bytes[static_cast<std::size_t>(i)];
    LADON_CHECK(label < 10, kOp, "'", labels_path, "': label ", int{label}, " at row ", i, " is not in 0..9");
    item_p[i] = label;
    group_p[i] = kFashionMnistGroup[label];
  }
  out.y = {item, group};
  out.task_names = {"item", "group"};
  return out;
}

}  // namespace

FashionMnist fashion_mnist(const std::string& dir) {
  return FashionMnist{load_split(dir, "train"), load_split(dir, "t10k")};
}

std::string fashion_mnist_file(const std::string& dir, const std::string& name) {
  std::error_code ec;
  LADON_CHECK(std::filesystem::is_directory(dir, ec), kOp, "directory '", dir, "' does not exist; ", kHowToGet);
  const std::filesystem::path gz = std::filesystem::path(dir) / (name + ".gz");
  if (std::filesystem::exists(gz, ec)) return gz.string();
  const std::filesystem::path plain = std::filesystem::path(dir) / name;
  if (std::filesystem::exists(plain, ec)) return plain.string();
  detail::fail(kOp, "neither '", gz.string(), "' nor '", plain.string(), "' exists; ", kHowToGet);
}

}  // namespace ladon::data
