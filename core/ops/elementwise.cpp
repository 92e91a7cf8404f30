// Elementwise ops: broadcasting binary math, unary math (and the normal CDF), clamp, where, comparisons.
#include <cmath>

#include "../../kernels/elementwise.h"
#include "../autograd.h"
#include "../ops.h"
#include "iterate.h"

namespace ladon {

using kernels::BinaryOp;
using kernels::CompareOp;
using kernels::UnaryOp;
using detail::check_float;

namespace detail {

Shape broadcast_shapes(const char* op, const Shape& a, const Shape& b) {
  const std::size_t rank = std::max(a.size(), b.size());
  Shape out(rank);
  for (std::size_t i = 0; i < rank; ++i) {
    const std::int64_t sa = i < rank - a.size() ? 1 : a[i - (rank - a.size())];
    const std::int64_t sb = i < rank - b.size() ? 1 : b[i - (rank - b.size())];
    LADON_CHECK(sa == sb || sa == 1 || sb == 1, op, shape_str(a), " and ", shape_str(b),
                " do not broadcast (dim ", i, ": ", sa, " vs ", sb, ")");
    out[i] = sa == 1 ? sb : sa;
  }
  return out;
}

std::int64_t normalize_dim(const char* op, std::int64_t dim, std::int64_t rank) {
  const std::int64_t bound = std::max<std::int64_t>(rank, 1);
  LADON_CHECK(dim >= -bound && dim < bound, op, "dim ", dim, " is out of range for a tensor of rank ", rank);
  return dim < 0 ? dim + bound : dim;
}

void copy_into(const Tensor& dst, const Tensor& src) {
  LADON_CHECK(dst.dtype() == src.dtype(), "copy", "cannot copy ", dtype_name(src.dtype()), " into ",
              dtype_name(dst.dtype()));
  const Shape shape = broadcast_shapes("copy", dst.shape(), src.shape());
  LADON_CHECK(shape == dst.shape(), "copy", "source ", shape_str(src.shape()), " does not broadcast to ",
              shape_str(dst.shape()));
  const Shape src_strides = broadcast_strides(src, shape);
  if (dst.dtype() == Dtype::float32) {
    float* out = const_cast<Tensor&>(dst).data<float>();
    const float* in = src.data<float>();
    for_each_row<2>(shape, {&dst.strides(), &src_strides}, {0, 0}, [&](std::int64_t n, auto at, auto st) {
      kernels::unary(UnaryOp::copy, n, in + at[1], st[1], out + at[0], st[0]);
    });
  } else {
    std::int64_t* out = const_cast<Tensor&>(dst).data<std::int64_t>();
    const std::int64_t* in = src.data<std::int64_t>();
    for_each_row<2>(shape, {&dst.strides(), &src_strides}, {0, 0}, [&](std::int64_t n, auto at, auto st) {
      kernels::copy_i64(n, in + at[1], st[1], out + at[0], st[0]);
    });
  }
}

}  // namespace detail

namespace {

Tensor unary_forward(UnaryOp op, const Tensor& x) {
  Tensor out = empty(x.shape());
  const float* in = x.data<float>();
  float* o = out.data<float>();
  detail::for_each_row<2>(x.shape(), {&out.strides(), &x.strides()}, {0, 0}, [&](std::int64_t n, auto at, auto st) {
    kernels::unary(op, n, in + at[1], st[1], o + at[0], st[0]);
  });
  return out;
}

Tensor binary_forward(const char* name, BinaryOp op, const Tensor& a, const Tensor& b) {
  check_float(name, a);
  check_float(name, b);
  const Shape shape = detail::broadcast_shapes(name, a.shape(), b.shape());
  Tensor out = empty(shape);
  const Shape sa = detail::broadcast_strides(a, shape), sb = detail::broadcast_strides(b, shape);
  const float* pa = a.data<float>();
  const float* pb = b.data<float>();
  float* po = out.data<float>();
  detail::for_each_row<3>(shape, {&out.strides(), &sa, &sb}, {0, 0, 0}, [&](std::int64_t n, auto at, auto st) {
    kernels::binary(op, n, pa + at[1], st[1], pb + at[2], st[2], po + at[0], st[0]);
  });
  return out;
}

Tensor compare_forward(const char* name, CompareOp op, const Tensor& a, const Tensor& b) {
  LADON_CHECK(a.dtype() == b.dtype(), name, "operands have different dtypes: ", dtype_name(a.dtype()), " ",
              shape_str(a.shape()), " vs ", dtype_name(b.dtype()), " ", shape_str(b.shape()));
  const Shape shape = detail::broadcast_shapes(name, a.shape(), b.shape());
  Tensor out = empty(shape);
  const Shape sa = detail::broadcast_strides(a, shape), sb = detail::broadcast_strides(b, shape);
  float* po = out.data<float>();
  detail::for_each_row<3>(shape, {&out.strides(), &sa, &sb}, {0, 0, 0}, [&](std::int64_t n, auto at, auto st) {
    if (a.dtype() == Dtype::float32)
      kernels::compare(op, n, a.data<float>() + at[1], st[1], b.data<float>() + at[2], st[2], po + at[0], st[0]);
    else
      kernels::compare(op, n, a.data<std::int64_t>() + at[1], st[1], b.data<std::int64_t>() + at[2], st[2],
                       po + at[0], st[0]);
  });
  return out;
}

}  // namespace

// ---- binary -------------------------------------------------------------------------------------

Tensor add(const Tensor& a, const Tensor& b) {
  Tensor out = binary_forward("add", BinaryOp::add, a, b);
  return record(out, "add", {a, b}, [sa = a.shape(), sb = b.shape()](const Tensor& g, const std::vector<bool>& need) {
    return Grads{need[0] ? sum_to(g, sa) : Tensor(), need[1] ? sum_to(g, sb) : Tensor()};
  });
}

Tensor sub(const Tensor& a, const Tensor& b) {
  Tensor out = binary_forward("sub", BinaryOp::sub, a, b);
  return record(out, "sub", {a, b}, [sa = a.shape(), sb = b.shape()](const Tensor& g, const std::vector<bool>& need) {
    return Grads{need[0] ? sum_to(g, sa) : Tensor(), need[1] ? sum_to(neg(g), sb) : Tensor()};
  });
}

Tensor mul(const Tensor& a, const Tensor& b) {
  Tensor out = binary_forward("mul", BinaryOp::mul, a, b);
  return record(out, "mul", {a, b}, [a = a.detach(), b = b.detach()](const Tensor& g, const std::vector<bool>& need) {
    return Grads{need[0] ? sum_to(mul(g, b), a.shape()) : Tensor(), need[1] ? sum_to(mul(g, a), b.shape()) : Tensor()};
  });
}

Tensor div(const Tensor& a, const Tensor& b) {
  Tensor out = binary_forward("div", BinaryOp::div, a, b);
  return record(out, "div", {a, b},
                [a = a.detach(), b = b.detach(), out = out.detach()](const Tensor& g, const std::vector<bool>& need) {
                  const Tensor ga = need[0] || need[1] ? div(g, b) : Tensor();
                  return Grads{need[0] ? sum_to(ga, a.shape()) : Tensor(),
                               need[1] ? sum_to(neg(mul(ga, out)), b.shape()) : Tensor()};
                });
}

Tensor pow(const Tensor& a, const Tensor& b) {
  Tensor out = binary_forward("pow", BinaryOp::pow, a, b);
  return record(out, "pow", {a, b},
                [a = a.detach(), b = b.detach(), out = out.detach()](const Tensor& g, const std::vector<bool>& need) {
                  // As in PyTorch, the terms that are 0 * inf or 0 * log(0) are taken to be 0:
                  // d/da is 0 where b == 0 (so pow(x, 0) is flat even at x = 0), and d/db is 0
                  // where a == 0 and b >= 0 (0^b stays 0 or 1 as b moves).
                  const Tensor zero = scalar(0.0);
                  Grads grads(2);
                  if (need[0])
                    grads[0] = sum_to(mul(g, where(eq(b, zero), zero, mul(b, pow(a, sub(b, scalar(1.0)))))), a.shape());
                  if (need[1])
                    grads[1] = sum_to(mul(g, where(mul(eq(a, zero), ge(b, zero)), zero, mul(out, log(a)))), b.shape());
                  return grads;
                });
}

Tensor pow(const Tensor& a, double exponent) { return pow(a, scalar(exponent)); }

namespace {
// Gradient routing for maximum/minimum: the winning side gets it, ties split it in half.
Grads select_grads(const Tensor& g, const Tensor& a, const Tensor& b, const Tensor& a_wins,
                   const std::vector<bool>& need) {
  const Tensor share_a = add(a_wins, mul(eq(a, b), scalar(0.5)));
  Grads grads(2);
  if (need[0]) grads[0] = sum_to(mul(g, share_a), a.shape());
  if (need[1]) grads[1] = sum_to(mul(g, sub(scalar(1.0), share_a)), b.shape());
  return grads;
}
}  // namespace

Tensor maximum(const Tensor& a, const Tensor& b) {
  Tensor out = binary_forward("maximum", BinaryOp::maximum, a, b);
  return record(out, "maximum", {a, b}, [a = a.detach(), b = b.detach()](const Tensor& g, const std::vector<bool>& need) {
    return select_grads(g, a, b, gt(a, b), need);
  });
}

Tensor minimum(const Tensor& a, const Tensor& b) {
  Tensor out = binary_forward("minimum", BinaryOp::minimum, a, b);
  return record(out, "minimum", {a, b}, [a = a.detach(), b = b.detach()](const Tensor& g, const std::vector<bool>& need) {
    return select_grads(g, a, b, lt(a, b), need);
  });
}

// ---- unary --------------------------------------------------------------------------------------

Tensor neg(const Tensor& x) {
  check_float("neg", x);
  return record(unary_forward(UnaryOp::neg, x), "neg", {x},
                [](const Tensor& g, const std::vector<bool>&) { return Grads{neg(g)}; });
}

Tensor exp(const Tensor& x) {
  check_float("exp", x);
  Tensor out = unary_forward(UnaryOp::exp, x);
  return record(out, "exp", {x}, [out = out.detach()](const Tensor& g, const std::vector<bool>&) {
    return Grads{mul(g, out)};
  });
}

Tensor log(const Tensor& x) {
  check_float("log", x);
  return record(unary_forward(UnaryOp::log, x), "log", {x}, [x = x.detach()](const Tensor& g, const std::vector<bool>&) {
    return Grads{div(g, x)};
  });
}

Tensor sqrt(const Tensor& x) {
  check_float("sqrt", x);
  Tensor out = unary_forward(UnaryOp::sqrt, x);
  return record(out, "sqrt", {x}, [out = out.detach()](const Tensor& g, const std::vector<bool>&) {
    return Grads{div(g, mul(out, scalar(2.0)))};
  });
}

Tensor abs(const Tensor& x) {
  check_float("abs", x);
  return record(unary_forward(UnaryOp::abs, x), "abs", {x}, [x = x.detach()](const Tensor& g, const std::vector<bool>&) {
    return Grads{mul(g, unary_forward(UnaryOp::sign, x))};
  });
}

namespace detail {
Tensor relu_grad(const Tensor& y, const Tensor& g) {
  const Tensor yc = y.contiguous(), gc = g.expand(y.shape()).contiguous();
  Tensor out = empty(y.shape());
  parallel_for(0, y.numel(), kElementwiseGrain, [&](std::int64_t begin, std::int64_t end) {
    kernels::relu_grad(end - begin, yc.data<float>() + begin, gc.data<float>() + begin, out.data<float>() + begin);
  });
  return out;
}
}  // namespace detail

Tensor relu(const Tensor& x) {
  check_float("relu", x);
  Tensor out = unary_forward(UnaryOp::relu, x);
  return record(out, "relu", {x}, [out = out.detach()](const Tensor& g, const std::vector<bool>&) {
    return Grads{detail::relu_grad(out, g)};
  });
}

Tensor sigmoid(const Tensor& x) {
  check_float("sigmoid", x);
  Tensor out = unary_forward(UnaryOp::sigmoid, x);
  return record(out, "sigmoid", {x}, [out = out.detach()](const Tensor& g, const std::vector<bool>&) {
    return Grads{mul(g, mul(out, sub(scalar(1.0), out)))};
  });
}

Tensor tanh(const Tensor& x) {
  check_float("tanh", x);
  Tensor out = unary_forward(UnaryOp::tanh, x);
  return record(out, "tanh", {x}, [out = out.detach()](const Tensor& g, const std::vector<bool>&) {
    return Grads{mul(g, sub(scalar(1.0), mul(out, out)))};
  });
}

Tensor gelu(const Tensor& x, Gelu form) {
  check_float("gelu", x);
  const bool exact = form == Gelu::exact;
  return record(unary_forward(exact ? UnaryOp::gelu : UnaryOp::gelu_tanh, x), "gelu", {x},
                [x = x.detach(), exact](const Tensor& g, const std::vector<bool>&) {
                  return Grads{mul(g, unary_forward(exact ? UnaryOp::gelu_grad : UnaryOp::gelu_tanh_grad, x))};
                });
}

Tensor clamp(const Tensor& x, double low, double high) {
  check_float("clamp", x);
  LADON_CHECK(low <= high, "clamp", "low ", low, " is above high ", high);
  Tensor out = empty(x.shape());
  const float* in = x.data<float>();
  float* o = out.data<float>();
  detail::for_each_row<2>(x.shape(), {&out.strides(), &x.strides()}, {0, 0}, [&](std::int64_t n, auto at, auto st) {
    kernels::clamp(n, in + at[1], st[1], static_cast<float>(low), static_cast<float>(high), o + at[0], st[0]);
  });
  return record(out, "clamp", {x}, [x = x.detach(), low, high](const Tensor& g, const std::vector<bool>&) {
    return Grads{mul(g, mul(ge(x, scalar(low)), le(x, scalar(high))))};  // bounds pass the gradient, as in PyTorch
  });
}

// Φ(x) = erfc(-x / sqrt 2) / 2 in double (erfc keeps the lower tail's relative accuracy), with
// dΦ/dx = exp(-x² / 2) / sqrt(2π). A libm call per element: its one user (the sparse MoE's load
// loss) applies it to [batch, experts].
Tensor normal_cdf(const Tensor& x) {
  check_float("normal_cdf", x);
  const Tensor xc = x.detach().contiguous();
  Tensor out = empty(x.shape());
  const float* in = xc.data<float>();
  float* o = out.data<float>();
  for (std::int64_t i = 0; i < xc.numel(); ++i)
    o[i] = static_cast<float>(0.5 * std::erfc(-static_cast<double>(in[i]) / std::sqrt(2.0)));
  return record(out, "normal_cdf", {x}, [x = x.detach()](const Tensor& g, const std::vector<bool>&) {
    const double inv_sqrt_2pi = 1.0 / std::sqrt(2.0 * std::acos(-1.0));
    return Grads{g * (exp(x * x * -0.5) * inv_sqrt_2pi)};
  });
}

Tensor where(const Tensor& condition, const Tensor& a, const Tensor& b) {
  check_float("where", condition);
  check_float("where", a);
  check_float("where", b);
  const Shape shape =
      detail::broadcast_shapes("where", detail::broadcast_shapes("where", condition.shape(), a.shape()), b.shape());
  Tensor out = empty(shape);
  const Shape sc = detail::broadcast_strides(condition, shape), sa = detail::broadcast_strides(a, shape),
              sb = detail::broadcast_strides(b, shape);
  const float* pc = condition.data<float>();
  const float* pa = a.data<float>();
  const float* pb = b.data<float>();
  float* po = out.data<float>();
  detail::for_each_row<4>(shape, {&out.strides(), &sc, &sa, &sb}, {0, 0, 0, 0}, [&](std::int64_t n, auto at, auto st) {
    kernels::where(n, pc + at[1], st[1], pa + at[2], st[2], pb + at[3], st[3], po + at[0], st[0]);
  });
  return record(out, "where", {Tensor(), a, b},
                [mask = ne(condition, scalar(0.0)), sa = a.shape(), sb = b.shape()](const Tensor& g,
                                                                                   const std::vector<bool>& need) {
                  Grads grads(3);
                  if (need[1]) grads[1] = sum_to(mul(g, mask), sa);
                  if (need[2]) grads[2] = sum_to(mul(g, sub(scalar(1.0), mask)), sb);
                  return grads;
                });
}

// ---- comparisons (not differentiable) -----------------------------------------------------------

Tensor eq(const Tensor& a, const Tensor& b) { return compare_forward("eq", CompareOp::eq, a, b); }
Tensor ne(const Tensor& a, const Tensor& b) { return compare_forward("ne", CompareOp::ne, a, b); }
Tensor lt(const Tensor& a, const Tensor& b) { return compare_forward("lt", CompareOp::lt, a, b); }
Tensor le(const Tensor& a, const Tensor& b) { return compare_forward("le", CompareOp::le, a, b); }
Tensor gt(const Tensor& a, const Tensor& b) { return compare_forward("gt", CompareOp::gt, a, b); }
Tensor ge(const Tensor& a, const Tensor& b) { return compare_forward("ge", CompareOp::ge, a, b); }

bool equal(const Tensor& a, const Tensor& b) {
  if (a.shape() != b.shape() || a.dtype() != b.dtype()) return false;
  if (a.numel() == 0) return true;
  return sum(ne(a, b)).item() == 0.0;
}

bool allclose(const Tensor& a, const Tensor& b, double rtol, double atol) {
  if (a.shape() != b.shape() || a.dtype() != Dtype::float32 || b.dtype() != Dtype::float32) return false;
  const std::vector<float> va = a.to_vector<float>(), vb = b.to_vector<float>();
  for (std::size_t i = 0; i < va.size(); ++i)
    if (!(std::fabs(va[i] - vb[i]) <= atol + rtol * std::fabs(vb[i]))) return false;
  return true;
}

}  // namespace ladon
