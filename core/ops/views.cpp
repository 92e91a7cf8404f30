// View ops: new geometry over the same storage. Their backward maps the gradient back to the
// input's geometry.
#include <numeric>
#include <optional>

#include "../autograd.h"
#include "../ops.h"
#include "iterate.h"

namespace ladon {

using detail::make_view;
using detail::normalize_dim;

namespace {

Shape infer_shape(const char* op, Shape shape, std::int64_t numel, const Shape& from) {
  std::int64_t known = 1, infer_at = -1;
  for (std::size_t i = 0; i < shape.size(); ++i) {
    if (shape[i] == -1) {
      LADON_CHECK(infer_at < 0, op, "only one size may be -1, got ", shape_str(shape));
      infer_at = static_cast<std::int64_t>(i);
    } else {
      LADON_CHECK(shape[i] >= 0, op, "invalid size in ", shape_str(shape));
      known *= shape[i];
    }
  }
  if (infer_at >= 0) {
    LADON_CHECK(known != 0 && numel % known == 0, op, "cannot reshape ", shape_str(from), " into ", shape_str(shape));
    shape[infer_at] = numel / known;
  }
  LADON_CHECK(shape_numel(shape) == numel, op, "cannot reshape ", shape_str(from), " (", numel, " elements) into ",
              shape_str(shape), " (", shape_numel(shape), " elements)");
  return shape;
}

// Strides for viewing `t` as `shape` without a copy, or empty when impossible (NumPy's algorithm:
// each run of merged input dims must be contiguous within itself).
std::optional<Shape> view_strides(const Tensor& t, const Shape& shape) {
  if (t.numel() == 0 || t.is_contiguous()) return contiguous_strides(shape);
  const Shape& old_shape = t.shape();
  const Shape& old_strides = t.strides();
  Shape strides(shape.size());
  std::size_t oi = 0, ni = 0;
  while (oi < old_shape.size() && ni < shape.size()) {
    std::int64_t old_n = old_shape[oi], new_n = shape[ni];
    std::size_t oj = oi + 1, nj = ni + 1;
    while (old_n != new_n) {
      if (old_n < new_n)
        old_n *= old_shape[oj++];
      else
        new_n *= shape[nj++];
    }
    for (std::size_t k = oi; k + 1 < oj; ++k)
      if (old_strides[k] != old_strides[k + 1] * old_shape[k + 1]) return std::nullopt;
    strides[nj - 1] = old_strides[oj - 1];
    for (std::size_t k = nj - 1; k > ni; --k) strides[k - 1] = strides[k] * shape[k];
    oi = oj;
    ni = nj;
  }
  for (; ni < shape.size(); ++ni) strides[ni] = 1;  // trailing size-1 dims
  return strides;
}

Tensor record_reshape(Tensor out, const Tensor& input) {
  return record(out, "reshape", {input}, [shape = input.shape()](const Tensor& g, const std::vector<bool>&) {
    return Grads{g.reshape(shape)};
  });
}

}  // namespace

Tensor Tensor::view(Shape shape) const {
  shape = infer_shape("view", std::move(shape), numel(), this->shape());
  const auto strides = view_strides(*this, shape);
  LADON_CHECK(strides.has_value(), "view", "cannot view a tensor of shape ", shape_str(this->shape()),
              " with strides ", shape_str(this->strides()), " as ", shape_str(shape),
              " without a copy; use reshape()");
  return record_reshape(make_view(*this, shape, *strides, offset()), *this);
}

Tensor Tensor::reshape(Shape shape) const {
  shape = infer_shape("reshape", std::move(shape), numel(), this->shape());
  if (const auto strides = view_strides(*this, shape))
    return record_reshape(make_view(*this, shape, *strides, offset()), *this);
  return contiguous().view(shape);
}

Tensor Tensor::flatten(std::int64_t start_dim, std::int64_t end_dim) const {
  if (dim() == 0) return reshape({1});
  const std::int64_t start = normalize_dim("flatten", start_dim, dim());
  const std::int64_t end = normalize_dim("flatten", end_dim, dim());
  LADON_CHECK(start <= end, "flatten", "start_dim ", start_dim, " comes after end_dim ", end_dim);
  Shape shape(this->shape().begin(), this->shape().begin() + start);
  shape.push_back(std::accumulate(this->shape().begin() + start, this->shape().begin() + end + 1, std::int64_t{1},
                                  std::multiplies<>()));
  shape.insert(shape.end(), this->shape().begin() + end + 1, this->shape().end());
  return reshape(shape);
}

Tensor Tensor::permute(const Shape& order) const {
  LADON_CHECK(static_cast<std::int64_t>(order.size()) == dim(), "permute", "order ", shape_str(order),
              " does not match a tensor of rank ", dim());
  Shape shape(order.size()), strides(order.size()), inverse(order.size());
  std::vector<bool> seen(order.size(), false);
  for (std::size_t i = 0; i < order.size(); ++i) {
    const std::int64_t d = normalize_dim("permute", order[i], dim());
    LADON_CHECK(!seen[d], "permute", "dim ", d, " appears twice in ", shape_str(order));
    seen[d] = true;
    shape[i] = this->shape()[d];
    strides[i] = this->strides()[d];
    inverse[d] = static_cast<std::int64_t>(i);
  }
  return record(make_view(*this, shape, strides, offset()), "permute", {*this},
                [inverse](const Tensor& g, const std::vector<bool>&) { return Grads{g.permute(inverse)}; });
}

Tensor Tensor::transpose(std::int64_t dim0, std::int64_t dim1) const {
  Shape order(static_cast<std::size_t>(dim()));
  std::iota(order.begin(), order.end(), std::int64_t{0});
  if (dim() > 0) std::swap(order[normalize_dim("transpose", dim0, dim())], order[normalize_dim("transpose", dim1, dim())]);
  return permute(order);
}

Tensor Tensor::t() const {
  LADON_CHECK(dim() == 2, "t", "expects a 2-D tensor, got ", shape_str(shape()));
  return transpose(0, 1);
}

Tensor Tensor::narrow(std::int64_t dim_, std::int64_t start, std::int64_t length) const {
  const std::int64_t d = normalize_dim("narrow", dim_, dim());
  LADON_CHECK(dim() > 0, "narrow", "cannot narrow a 0-d tensor");
  const std::int64_t n = shape()[d];
  // Compared without forming start + length, which can overflow.
  LADON_CHECK(start >= 0 && length >= 0 && start <= n && length <= n - start, "narrow", "start ", start, " and length ",
              length, " are out of bounds for dim ", d, " of size ", n, " in ", shape_str(shape()));
  Shape shape = this->shape();
  shape[d] = length;
  Tensor out = make_view(*this, shape, strides(), offset() + start * strides()[d]);
  return record(out, "narrow", {*this}, [full = this->shape(), d, start, length](const Tensor& g, const std::vector<bool>&) {
    Tensor grad = zeros(full);
    detail::copy_into(grad.narrow(d, start, length), g);
    return Grads{grad};
  });
}

Tensor Tensor::expand(const Shape& shape) const {
  LADON_CHECK(shape.size() >= this->shape().size(), "expand", "cannot expand ", shape_str(this->shape()), " to fewer dims ",
              shape_str(shape));
  Shape target = shape;
  const std::size_t lead = shape.size() - this->shape().size();
  for (std::size_t i = 0; i < this->shape().size(); ++i) {
    if (target[lead + i] == -1) target[lead + i] = this->shape()[i];
    LADON_CHECK(target[lead + i] >= 0, "expand", "cannot expand ", shape_str(this->shape()), " to ", shape_str(shape),
                ": size ", shape[lead + i], " in dim ", lead + i, " is negative");
    LADON_CHECK(this->shape()[i] == target[lead + i] || this->shape()[i] == 1, "expand", "cannot expand ",
                shape_str(this->shape()), " to ", shape_str(shape), " (dim ", lead + i, ")");
  }
  for (std::size_t i = 0; i < lead; ++i)
    LADON_CHECK(target[i] >= 0, "expand", "cannot expand ", shape_str(this->shape()), " to ", shape_str(shape), ": size ",
                target[i], " in new leading dim ", i, " is negative");
  shape_numel(target);  // throws when the element count overflows
  Tensor out = make_view(*this, target, detail::broadcast_strides(*this, target), offset());
  return record(out, "expand", {*this}, [from = this->shape()](const Tensor& g, const std::vector<bool>&) {
    return Grads{sum_to(g, from)};
  });
}

Tensor Tensor::squeeze(std::int64_t dim_) const {
  const std::int64_t d = normalize_dim("squeeze", dim_, dim());
  if (dim() == 0 || shape()[d] != 1) return *this;
  Shape shape = this->shape();
  shape.erase(shape.begin() + d);
  return reshape(shape);
}

Tensor Tensor::unsqueeze(std::int64_t dim_) const {
  const std::int64_t d = normalize_dim("unsqueeze", dim_, dim() + 1);
  Shape shape = this->shape(), strides = this->strides();
  shape.insert(shape.begin() + d, 1);
  strides.insert(strides.begin() + d, d < dim() ? this->strides()[d] * this->shape()[d] : 1);
  return record_reshape(make_view(*this, shape, strides, offset()), *this);
}

Tensor Tensor::clone() const {
  Tensor out = empty(shape(), dtype());
  detail::copy_into(out, *this);
  return record(out, "clone", {*this}, [](const Tensor& g, const std::vector<bool>&) { return Grads{g}; });
}

Tensor Tensor::contiguous() const { return is_contiguous() ? *this : clone(); }

}  // namespace ladon
