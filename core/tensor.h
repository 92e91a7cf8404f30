// Tensor: a cheap, copyable handle to shared storage plus shape, strides and offset.
//
// Copying a Tensor copies the handle, never the data: two copies are the same tensor (same data,
// same gradient). View methods (reshape, transpose, narrow, expand, ...) return new tensors that
// share storage. Math lives in free functions (core/ops.h); members are limited to metadata, data
// access, views and autograd, so there is one way to call each thing.
#pragma once

#include "layer_fence.h"

#include <cstdint>
#include <initializer_list>
#include <iosfwd>
#include <memory>
#include <string>
#include <vector>

#include "error.h"
#include "shape.h"

namespace ladon {

enum class Dtype : std::uint8_t { float32, int64 };
const char* dtype_name(Dtype dtype);
std::size_t dtype_size(Dtype dtype);

// Shape (core/shape.h): dims or strides, like std::vector<std::int64_t> with six dims inline.
std::string shape_str(const Shape& shape);  // "[2, 3]"
std::int64_t shape_numel(const Shape& shape);
Shape contiguous_strides(const Shape& shape);

class Storage;
class Node;
struct TensorImpl;

class Tensor {
 public:
  Tensor() = default;  // an undefined tensor: defined() is false
  explicit Tensor(std::shared_ptr<TensorImpl> impl);

  bool defined() const { return impl_ != nullptr; }
  const Shape& shape() const;
  const Shape& strides() const;
  std::int64_t offset() const;
  std::int64_t dim() const;
  std::int64_t size(std::int64_t dim) const;  // negative dims count from the end
  std::int64_t numel() const;
  Dtype dtype() const;
  bool is_contiguous() const;

  // Typed access to the first element (offset applied). Throws when T does not match dtype().
  template <typename T>
  T* data();
  template <typename T>
  const T* data() const;
  double item() const;  // the value of a one-element tensor
  template <typename T>
  std::vector<T> to_vector() const;  // row-major copy of the elements

  // Views: share storage, differentiable.
  Tensor reshape(Shape shape) const;  // a view when strides allow, otherwise a copy; -1 infers one size
  Tensor view(Shape shape) const;     // always a view; throws when strides do not allow it
  Tensor flatten(std::int64_t start_dim = 0, std::int64_t end_dim = -1) const;
  Tensor transpose(std::int64_t dim0, std::int64_t dim1) const;
  Tensor t() const;  // transpose of a 2-D tensor
  Tensor permute(const Shape& order) const;
  Tensor narrow(std::int64_t dim, std::int64_t start, std::int64_t length) const;
  Tensor expand(const Shape& shape) const;  // broadcast size-1 dims without copying
  Tensor squeeze(std::int64_t dim) const;
  Tensor unsqueeze(std::int64_t dim) const;
  Tensor contiguous() const;  // itself when already contiguous, otherwise a copy
  Tensor clone() const;       // always a fresh contiguous copy (differentiable)

  // Autograd.
  bool requires_grad() const;
  Tensor& requires_grad_(bool on = true);  // only for leaves
  bool is_leaf() const;
  Tensor grad() const;  // the accumulated gradient of a leaf, or undefined
  void set_grad(const Tensor& grad) const;
  void zero_grad() const;  // drops the gradient
  // Seeds with 1 for a one-element tensor; otherwise a seed of the same shape is required.
  void backward(const Tensor& seed = Tensor(), bool retain_graph = false) const;
  Tensor detach() const;  // same data, no history
  const std::shared_ptr<Node>& grad_fn() const;

  const std::shared_ptr<TensorImpl>& impl() const { return impl_; }
  bool same(const Tensor& other) const { return impl_ == other.impl_; }

 private:
  std::shared_ptr<TensorImpl> impl_;
};

struct TensorImpl {
  std::shared_ptr<Storage> storage;
  Shape shape;
  Shape strides;  // in elements
  std::int64_t offset = 0;
  Dtype dtype = Dtype::float32;
  bool requires_grad = false;
  std::shared_ptr<Node> grad_fn;  // null for leaves
  Tensor grad;
};

// Creation. Shapes may be empty (a 0-d scalar tensor).
Tensor empty(const Shape& shape, Dtype dtype = Dtype::float32);  // uninitialised
Tensor zeros(const Shape& shape, Dtype dtype = Dtype::float32);
Tensor ones(const Shape& shape, Dtype dtype = Dtype::float32);
Tensor full(const Shape& shape, double value, Dtype dtype = Dtype::float32);
Tensor scalar(double value, Dtype dtype = Dtype::float32);
Tensor arange(std::int64_t end, Dtype dtype = Dtype::int64);
Tensor arange(double start, double end, double step = 1.0, Dtype dtype = Dtype::float32);
Tensor tensor(std::vector<float> values, Shape shape);  // shape must hold values.size() elements
Tensor tensor(std::vector<std::int64_t> values, Shape shape);
// Braced lists are float32: tensor({1, 2, 3, 4}, {2, 2}). Spell int64 as std::vector<std::int64_t>.
inline Tensor tensor(std::initializer_list<float> values, Shape shape) {
  return tensor(std::vector<float>(values), std::move(shape));
}
inline Tensor tensor(std::initializer_list<float> values) {
  return tensor(std::vector<float>(values), Shape{static_cast<std::int64_t>(values.size())});
}

std::ostream& operator<<(std::ostream& out, const Tensor& tensor);

}  // namespace ladon
