// cat, stack, split.
#include "../autograd.h"
#include "../ops.h"
#include "iterate.h"

namespace ladon {

Tensor cat(const std::vector<Tensor>& tensors, std::int64_t dim) {
  LADON_CHECK(!tensors.empty(), "cat", "needs at least one tensor");
  const Tensor& first = tensors[0];
  LADON_CHECK(first.dim() > 0, "cat", "cannot concatenate 0-d tensors; use stack");
  const std::int64_t d = detail::normalize_dim("cat", dim, first.dim());
  Shape shape = first.shape();
  shape[d] = 0;
  for (std::size_t i = 0; i < tensors.size(); ++i) {
    const Tensor& t = tensors[i];
    LADON_CHECK(t.dtype() == first.dtype(), "cat", "tensor ", i, " is ", dtype_name(t.dtype()), ", tensor 0 is ",
                dtype_name(first.dtype()));
    bool compatible = t.dim() == first.dim();
    for (std::int64_t k = 0; compatible && k < t.dim(); ++k) compatible = k == d || t.shape()[k] == first.shape()[k];
    LADON_CHECK(compatible, "cat", "tensor ", i, " has shape ", shape_str(t.shape()), ", tensor 0 has ",
                shape_str(first.shape()), "; they must match except in dim ", d);
    shape[d] += t.shape()[d];
  }
  Tensor out = empty(shape, first.dtype());
  std::vector<std::int64_t> sizes;
  std::int64_t at = 0;
  for (const Tensor& t : tensors) {
    detail::copy_into(detail::make_view(out, t.shape(), out.strides(), at * out.strides()[d]), t);
    sizes.push_back(t.shape()[d]);
    at += t.shape()[d];
  }
  return record(out, "cat", tensors, [sizes, d](const Tensor& g, const std::vector<bool>& need) {
    Grads grads(sizes.size());
    std::int64_t start = 0;
    for (std::size_t i = 0; i < sizes.size(); ++i) {
      if (need[i]) grads[i] = g.narrow(d, start, sizes[i]);
      start += sizes[i];
    }
    return grads;
  });
}

Tensor stack(const std::vector<Tensor>& tensors, std::int64_t dim) {
  LADON_CHECK(!tensors.empty(), "stack", "needs at least one tensor");
  const std::int64_t d = detail::normalize_dim("stack", dim, tensors[0].dim() + 1);
  std::vector<Tensor> expanded;
  for (std::size_t i = 0; i < tensors.size(); ++i) {
    LADON_CHECK(tensors[i].shape() == tensors[0].shape(), "stack", "tensor ", i, " has shape ",
                shape_str(tensors[i].shape()), ", tensor 0 has ", shape_str(tensors[0].shape()));
    expanded.push_back(tensors[i].unsqueeze(d));
  }
  return cat(expanded, d);
}

std::vector<Tensor> split(const Tensor& x, std::int64_t size, std::int64_t dim) {
  LADON_CHECK(x.dim() > 0, "split", "cannot split a 0-d tensor");
  const std::int64_t d = detail::normalize_dim("split", dim, x.dim());
  LADON_CHECK(size > 0, "split", "chunk size must be positive, got ", size);
  std::vector<Tensor> parts;
  for (std::int64_t start = 0; start < x.shape()[d]; start += size)
    parts.push_back(x.narrow(d, start, std::min(size, x.shape()[d] - start)));
  return parts;
}

}  // namespace ladon
