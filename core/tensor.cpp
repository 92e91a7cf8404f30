#include "tensor.h"

#include <cmath>
#include <cstring>
#include <iomanip>
#include <new>
#include <ostream>
#include <sstream>

#include "autograd.h"
#include "ops.h"
#include "storage.h"

namespace ladon {

const char* dtype_name(Dtype dtype) { return dtype == Dtype::float32 ? "float32" : "int64"; }
std::size_t dtype_size(Dtype dtype) { return dtype == Dtype::float32 ? 4 : 8; }

std::string shape_str(const Shape& shape) {
  std::string s = "[";
  for (std::size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

std::int64_t shape_numel(const Shape& shape) {
  std::int64_t n = 1;
  for (std::int64_t s : shape)
    // An overflowing product would wrap to a small or negative count, and a buffer that small
    // would then be indexed with the real sizes.
    LADON_CHECK(!__builtin_mul_overflow(n, s, &n), "shape", shape_str(shape), " has more elements than fit in int64");
  return n;
}

Shape contiguous_strides(const Shape& shape) {
  Shape strides(shape.size());
  std::int64_t stride = 1;
  for (std::size_t i = shape.size(); i-- > 0;) {
    strides[i] = stride;
    LADON_CHECK(!__builtin_mul_overflow(stride, std::max<std::int64_t>(shape[i], 1), &stride), "shape",
                shape_str(shape), " is too large: its strides overflow int64");
  }
  return strides;
}

Tensor::Tensor(std::shared_ptr<TensorImpl> impl) : impl_(std::move(impl)) {}

namespace {
const TensorImpl& checked(const std::shared_ptr<TensorImpl>& impl) {
  LADON_CHECK(impl != nullptr, "tensor", "use of an undefined tensor");
  return *impl;
}
}  // namespace

const Shape& Tensor::shape() const { return checked(impl_).shape; }
const Shape& Tensor::strides() const { return checked(impl_).strides; }
std::int64_t Tensor::offset() const { return checked(impl_).offset; }
std::int64_t Tensor::dim() const { return static_cast<std::int64_t>(shape().size()); }
std::int64_t Tensor::size(std::int64_t d) const { return shape()[detail::normalize_dim("size", d, dim())]; }
std::int64_t Tensor::numel() const { return shape_numel(shape()); }
Dtype Tensor::dtype() const { return checked(impl_).dtype; }

bool Tensor::is_contiguous() const {
  const TensorImpl& t = checked(impl_);
  std::int64_t expected = 1;
  for (std::size_t i = t.shape.size(); i-- > 0;) {
    if (t.shape[i] == 1) continue;
    if (t.strides[i] != expected) return false;
    expected *= t.shape[i];
  }
  return true;
}

namespace {
template <typename T>
constexpr Dtype dtype_of() {
  static_assert(std::is_same_v<T, float> || std::is_same_v<T, std::int64_t>, "ladon tensors hold float or int64");
  return std::is_same_v<T, float> ? Dtype::float32 : Dtype::int64;
}
}  // namespace

template <typename T>
T* Tensor::data() {
  const TensorImpl& t = checked(impl_);
  LADON_CHECK(t.dtype == dtype_of<T>(), "data", "tensor holds ", dtype_name(t.dtype), ", requested ",
              dtype_name(dtype_of<T>()));
  return static_cast<T*>(t.storage->data()) + t.offset;
}

template <typename T>
const T* Tensor::data() const {
  return const_cast<Tensor*>(this)->data<T>();
}

template float* Tensor::data<float>();
template const float* Tensor::data<float>() const;
template std::int64_t* Tensor::data<std::int64_t>();
template const std::int64_t* Tensor::data<std::int64_t>() const;

template <typename T>
std::vector<T> Tensor::to_vector() const {
  const Tensor c = contiguous();
  const T* p = c.data<T>();
  return std::vector<T>(p, p + c.numel());
}
template std::vector<float> Tensor::to_vector<float>() const;
template std::vector<std::int64_t> Tensor::to_vector<std::int64_t>() const;

double Tensor::item() const {
  LADON_CHECK(numel() == 1, "item", "tensor of shape ", shape_str(shape()), " has ", numel(),
              " elements, not one");
  return dtype() == Dtype::float32 ? static_cast<double>(*data<float>()) : static_cast<double>(*data<std::int64_t>());
}

bool Tensor::requires_grad() const { return checked(impl_).requires_grad; }

Tensor& Tensor::requires_grad_(bool on) {
  LADON_CHECK(is_leaf(), "requires_grad_", "only leaf tensors can change requires_grad; call detach() first");
  LADON_CHECK(!on || dtype() == Dtype::float32, "requires_grad_", "only float32 tensors can require grad, got ",
              dtype_name(dtype()));
  impl_->requires_grad = on;
  return *this;
}

bool Tensor::is_leaf() const { return checked(impl_).grad_fn == nullptr; }
Tensor Tensor::grad() const {
  checked(impl_);
  TensorImpl& t = *impl_;
  if (!t.row_grads.empty()) {
    Tensor dense = t.grad.defined() ? t.grad.contiguous().clone() : zeros(t.shape);
    float* d = dense.data<float>();
    const std::int64_t dim = t.shape[1];
    for (const RowGrad& part : t.row_grads) {
      const std::int64_t* rows = part.rows.data<std::int64_t>();
      const float* v = part.values.data<float>();
      for (std::int64_t i = 0; i < part.rows.numel(); ++i)
        for (std::int64_t k = 0; k < dim; ++k) d[rows[i] * dim + k] += v[i * dim + k];
    }
    t.row_grads.clear();
    t.grad = dense;
  }
  return t.grad;
}

RowGrad Tensor::row_grad() const {
  checked(impl_);
  TensorImpl& t = *impl_;
  if (t.grad.defined() || t.row_grads.empty()) return {};
  if (t.row_grads.size() > 1) {
    std::vector<Tensor> rows, values;
    for (const RowGrad& part : t.row_grads) {
      rows.push_back(part.rows);
      values.push_back(part.values);
    }
    t.row_grads = {RowGrad{cat(rows, 0), cat(values, 0)}};
  }
  return t.row_grads.front();
}

void Tensor::set_grad(const Tensor& grad) const {
  LADON_CHECK(!grad.defined() || grad.shape() == shape(), "set_grad", "gradient of shape ", shape_str(grad.shape()),
              " for a tensor of shape ", shape_str(shape()));
  impl_->grad = grad;
  impl_->row_grads.clear();
}

void Tensor::zero_grad() const {
  impl_->grad = Tensor();
  impl_->row_grads.clear();
}

Tensor row_sparse_gradient(Tensor rows, Tensor values, const Shape& table_shape) {
  LADON_CHECK(table_shape.size() == 2 && rows.dtype() == Dtype::int64 && rows.dim() == 1 && values.dim() == 2 &&
                  values.size(0) == rows.numel() && values.size(1) == table_shape[1],
              "row_sparse_gradient", "rows ", shape_str(rows.shape()), " and values ", shape_str(values.shape()),
              " do not fit a table of shape ", shape_str(table_shape));
  // Checked here, where every row-sparse gradient is made: the optimizers' row updates and
  // dense_from_rows index the table by these rows.
  rows = rows.contiguous();
  const std::int64_t* r = rows.data<std::int64_t>();
  for (std::int64_t k = 0; k < rows.numel(); ++k)
    LADON_CHECK(r[k] >= 0 && r[k] < table_shape[0], "row_sparse_gradient", "row ", r[k],
                " is outside a table of shape ", shape_str(table_shape));
  auto impl = std::make_shared<TensorImpl>();
  impl->shape = table_shape;
  impl->strides = contiguous_strides(table_shape);
  impl->row_sparse = std::make_shared<const RowGrad>(RowGrad{rows, values.contiguous()});
  return Tensor(std::move(impl));
}

Tensor dense_from_rows(const RowGrad& grad, const Shape& table_shape) {
  Tensor dense = zeros(table_shape);
  float* d = dense.data<float>();
  const std::int64_t dim = table_shape[1];
  const std::int64_t* rows = grad.rows.data<std::int64_t>();
  const float* v = grad.values.data<float>();
  for (std::int64_t i = 0; i < grad.rows.numel(); ++i)
    for (std::int64_t k = 0; k < dim; ++k) d[rows[i] * dim + k] += v[i * dim + k];
  return dense;
}

const std::shared_ptr<Node>& Tensor::grad_fn() const { return checked(impl_).grad_fn; }

Tensor Tensor::detach() const {
  const TensorImpl& t = checked(impl_);
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = t.storage;
  impl->shape = t.shape;
  impl->strides = t.strides;
  impl->offset = t.offset;
  impl->dtype = t.dtype;
  return Tensor(std::move(impl));
}

Tensor empty(const Shape& shape, Dtype dtype) {
  for (std::int64_t s : shape)
    LADON_CHECK(s >= 0, "empty", "negative size in shape ", shape_str(shape));
  const std::int64_t numel = shape_numel(shape);
  // 2^60 bytes is far beyond any machine, and keeps the allocator's rounding from overflowing.
  constexpr std::int64_t kMaxBytes = std::int64_t{1} << 60;
  const auto item = static_cast<std::int64_t>(dtype_size(dtype));
  LADON_CHECK(numel <= kMaxBytes / item, "empty", "shape ", shape_str(shape), " of ", dtype_name(dtype), " needs ",
              numel, " elements of ", item, " bytes: too large to allocate");
  auto impl = std::make_shared<TensorImpl>();
  try {
    impl->storage = std::make_shared<Storage>(static_cast<std::size_t>(numel * item));
  } catch (const std::bad_alloc&) {
    detail::fail("empty", "out of memory allocating ", numel * item, " bytes for shape ", shape_str(shape), " of ",
                 dtype_name(dtype));
  }
  impl->shape = shape;
  impl->strides = contiguous_strides(shape);
  impl->dtype = dtype;
  return Tensor(std::move(impl));
}

Tensor full(const Shape& shape, double value, Dtype dtype) {
  Tensor out = empty(shape, dtype);
  const std::int64_t n = out.numel();
  if (dtype == Dtype::float32) {
    float* p = out.data<float>();
    std::fill(p, p + n, static_cast<float>(value));
  } else {
    std::int64_t* p = out.data<std::int64_t>();
    std::fill(p, p + n, static_cast<std::int64_t>(value));
  }
  return out;
}

Tensor zeros(const Shape& shape, Dtype dtype) { return full(shape, 0.0, dtype); }
Tensor ones(const Shape& shape, Dtype dtype) { return full(shape, 1.0, dtype); }
Tensor scalar(double value, Dtype dtype) { return full({}, value, dtype); }

Tensor arange(std::int64_t end, Dtype dtype) { return arange(0.0, static_cast<double>(end), 1.0, dtype); }

Tensor arange(double start, double end, double step, Dtype dtype) {
  LADON_CHECK(std::isfinite(start) && std::isfinite(end) && std::isfinite(step), "arange",
              "start, end and step must be finite, got ", start, ", ", end, ", ", step);
  LADON_CHECK(step != 0.0, "arange", "step must be non-zero");
  const double count = std::max(0.0, std::ceil((end - start) / step));
  // Compared as a double before the conversion, which is undefined beyond int64's range.
  LADON_CHECK(count < 0x1p62, "arange", "[", start, ", ", end, ") in steps of ", step, " has ", count,
              " elements: too many");
  const auto n = static_cast<std::int64_t>(count);
  Tensor out = empty({n}, dtype);
  for (std::int64_t i = 0; i < n; ++i) {
    const double v = start + static_cast<double>(i) * step;
    if (dtype == Dtype::float32)
      out.data<float>()[i] = static_cast<float>(v);
    else
      out.data<std::int64_t>()[i] = static_cast<std::int64_t>(v);
  }
  return out;
}

namespace {
template <typename T>
Tensor from_values(const char* op, const std::vector<T>& values, Shape shape) {
  LADON_CHECK(shape_numel(shape) == static_cast<std::int64_t>(values.size()), op, values.size(),
              " values do not fill shape ", shape_str(shape));
  Tensor out = empty(shape, dtype_of<T>());
  if (!values.empty()) std::memcpy(out.data<T>(), values.data(), values.size() * sizeof(T));
  return out;
}
}  // namespace

Tensor tensor(std::vector<float> values, Shape shape) { return from_values("tensor", values, std::move(shape)); }
Tensor tensor(std::vector<std::int64_t> values, Shape shape) {
  return from_values("tensor", values, std::move(shape));
}

std::ostream& operator<<(std::ostream& out, const Tensor& t) {
  if (!t.defined()) return out << "Tensor(undefined)";
  constexpr std::int64_t kShown = 6;  // per dim at each end before eliding
  const Tensor c = t.contiguous();
  const Shape& shape = c.shape();
  std::ostringstream s;
  s << std::setprecision(5);
  auto element = [&](std::int64_t i) {
    if (c.dtype() == Dtype::float32)
      s << c.data<float>()[i];
    else
      s << c.data<std::int64_t>()[i];
  };
  // Recursive over dims is fine here: printing depth is the rank, which is small.
  auto print_dim = [&](auto&& self, std::size_t d, std::int64_t base) -> void {
    if (d == shape.size()) return element(base);
    const std::int64_t n = shape[d], stride = c.strides()[d];
    s << "[";
    for (std::int64_t i = 0; i < n; ++i) {
      if (n > 2 * kShown && i == kShown) {
        s << "..., ";
        i = n - kShown;
      }
      self(self, d + 1, base + i * stride);
      if (i + 1 < n) s << (d + 1 == shape.size() ? ", " : ",\n ");
    }
    s << "]";
  };
  print_dim(print_dim, 0, 0);
  return out << "Tensor(" << s.str() << ", shape=" << shape_str(shape) << ", dtype=" << dtype_name(c.dtype())
             << (t.requires_grad() ? ", requires_grad" : "") << ")";
}

}  // namespace ladon
