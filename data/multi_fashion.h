// MultiFashion: pairs of Fashion-MNIST items on one image, built exactly as Sener & Koltun built
// MultiMNIST (NeurIPS 2018; isl-org/MultiObjectiveOptimization, multi_task/loaders/multi_mnist_loader.py):
//
//   1. for image i of a split, a partner j drawn uniformly from the same split (j = i and equal
//      classes are allowed, as there);
//   2. a 36 x 36 canvas of zeros; item i at rows and columns 0..27 (top-left), item j at 6..33
//      (offset 6 pixels right and down); where they overlap the pixel is the maximum of the two;
//   3. scipy.misc.imresize(canvas, (28, 28), interp='nearest'): first byte-scaling, value *
//      255 / canvas max rounded half up (the identity when the canvas max is 255), then Pillow's
//      NEAREST, whose output pixel i reads the source pixel floor((i + 0.5) * 36 / 28);
//   4. labels: "top_left" = class of i, "bottom_right" = class of j.
//
// Sener draws partners without a seed; here one Generator seeded with `seed` draws the train
// partners and then the test partners, so a seed fixes both splits. 60,000 train images come from
// the train split and 10,000 test images from the test split.
#pragma once

#include "layer_fence.h"

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "../core/random.h"
#include "dataset.h"
#include "idx.h"

namespace ladon::data {

// The geometry: items of side x side pixels, the first at the canvas's top-left corner, the
// second `offset` pixels right and down, on a canvas x canvas zero image, resized back to side x
// side. Sener's MultiMNIST is {28, 6, 36}: the items span rows 0..27 and 6..33, and rows 34, 35 stay
// black.
struct PairGeometry {
  std::int64_t side = 28;
  std::int64_t offset = 6;
  std::int64_t canvas = 36;
};

// Steps 2 and 3 on one pair of row-major side x side byte images: the side x side result.
// Throws unless side >= 1, offset >= 0, canvas >= side + offset, and both images hold side * side
// bytes.
std::vector<std::uint8_t> compose_pair(std::span<const std::uint8_t> first, std::span<const std::uint8_t> second,
                                       PairGeometry geometry = {});

// The source row (or column) of output pixel `i` when resizing `from` pixels to `to` with Pillow's
// NEAREST: floor((i + 0.5) * from / to), computed exactly in integers.
std::int64_t nearest_source(std::int64_t i, std::int64_t from, std::int64_t to);

struct MultiFashionOptions {
  std::uint64_t seed = 1;  // draws every partner (train first, then test)
};

// A split of pairs from IDX images [N, 28, 28] and labels [N] (0..9), partners drawn from `gen`.
// x is float32 [N, 1, 28, 28]: pixels / 255, then standardised with Fashion-MNIST's training mean
// and std (kFashionMnistMean, kFashionMnistStd), as Sener standardises MultiMNIST with MNIST's.
// Tasks "top_left" and "bottom_right", int64 [N]. Throws (naming `what`) on other shapes, an
// empty split, counts that differ, or a label not below 10.
Dataset multi_pairs(const IdxArray& images, const IdxArray& labels, Generator& gen, const std::string& what = "images");

// Both splits from the Fashion-MNIST IDX files in `dir` (as data::fashion_mnist finds them: .gz
// or plain). Throws ladon::Error, saying how to get the data, when they are missing.
FashionMnist multi_fashion(const std::string& dir = "/usr/share/datasets/fashion-mnist",
                           MultiFashionOptions options = {});

}  // namespace ladon::data
