// Fashion-MNIST (Xiao, Rasul, Vollgraf 2017) as a two-task data set.
#pragma once

#include "layer_fence.h"

#include <array>
#include <cstdint>
#include <string>

#include "dataset.h"

namespace ladon::data {

// Mean and standard deviation of the training pixels after scaling to [0, 1].
inline constexpr double kFashionMnistMean = 0.2860;
inline constexpr double kFashionMnistStd = 0.3530;

// The 4-way "group" label of each of the 10 items: tops (T-shirt, Pullover, Dress, Coat, Shirt) = 0,
// bottoms (Trouser) = 1, footwear (Sandal, Sneaker, Ankle boot) = 2, bags (Bag) = 3.
inline constexpr std::array<std::int64_t, 10> kFashionMnistGroup = {0, 1, 0, 0, 0, 2, 0, 2, 3, 2};

// Reads train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte and
// t10k-labels-idx1-ubyte from `dir`, each preferably with a .gz suffix, else uncompressed.
// x is float32 [N, 784]: pixels scaled to [0, 1], then standardised with the training mean and std
// above. Tasks: "item" (int64 [N], 0..9) and "group" (int64 [N], 0..3, see kFashionMnistGroup).
// Throws ladon::Error when the directory or a file is missing (saying how to get the data), when
// a file is malformed, when image and label counts differ, or when a label is not below 10.
FashionMnist fashion_mnist(const std::string& dir = "/usr/share/datasets/fashion-mnist");

// The path of the Fashion-MNIST file `name` (e.g. "train-images-idx3-ubyte") in `dir`: name.gz if
// present, else name. Throws ladon::Error, saying how to get the data, when `dir` or both are missing.
std::string fashion_mnist_file(const std::string& dir, const std::string& name);

}  // namespace ladon::data
