#include "pool.h"

#include <algorithm>

namespace ladon::nn {

Unflatten::Unflatten(std::int64_t dim, Shape sizes) : dim_(dim), sizes_(std::move(sizes)) {
  LADON_CHECK(!sizes_.empty(), "Unflatten", "sizes must not be empty");
  int inferred = 0;
  for (std::int64_t s : sizes_) {
    LADON_CHECK(s > 0 || s == -1, "Unflatten", "sizes must be positive or -1, got ", shape_str(sizes_));
    inferred += s == -1;
  }
  LADON_CHECK(inferred <= 1, "Unflatten", "at most one size may be -1, got ", shape_str(sizes_));
}

Tensor Unflatten::forward(const Tensor& x) {
  const std::int64_t d = detail::normalize_dim("Unflatten", dim_, x.dim());
  LADON_CHECK(x.dim() > 0, "Unflatten", "cannot unflatten a 0-d tensor");
  std::int64_t known = 1;
  for (std::int64_t s : sizes_)
    if (s != -1) known *= s;
  const std::int64_t size = x.shape()[d];
  const bool infers = known != 0 && std::find(sizes_.begin(), sizes_.end(), -1) != sizes_.end();
  LADON_CHECK(infers ? size % known == 0 : size == known, "Unflatten", "dim ", d, " of ", shape_str(x.shape()),
              " has size ", size, ", which cannot be split into ", shape_str(sizes_));
  Shape shape(x.shape().begin(), x.shape().begin() + d);
  shape.insert(shape.end(), sizes_.begin(), sizes_.end());
  shape.insert(shape.end(), x.shape().begin() + d + 1, x.shape().end());
  return x.reshape(shape);
}

}  // namespace ladon::nn
