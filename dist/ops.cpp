#include "ops.h"

#include <limits>
#include <numeric>

#include "../core/autograd.h"
#include "../core/error.h"

namespace ladon::dist {

namespace {

// Like core's record(), but keeps the node even when x needs no gradient on this rank: another
// rank's backward will run the collective in it, so this rank's must as well.
Tensor record_collective(Tensor out, const char* op, std::vector<Tensor> inputs, BackwardFn backward) {
  if (!grad_enabled()) return out;
  out.impl()->grad_fn = std::make_shared<Node>(op, std::move(inputs), std::move(backward));
  out.impl()->requires_grad = true;
  return out;
}

std::vector<int> element_counts(const std::vector<std::int64_t>& rows, std::int64_t width) {
  std::vector<int> counts(rows.size());
  for (std::size_t r = 0; r < rows.size(); ++r) {
    const std::int64_t n = rows[r] * width;
    LADON_CHECK(n <= std::numeric_limits<int>::max(), "dist::exchange", n, " values for one rank: MPI counts are int");
    counts[r] = static_cast<int>(n);
  }
  return counts;
}

}  // namespace

Tensor all_reduce_sum(const Tensor& x, Communicator& comm) {
  LADON_CHECK(x.dtype() == Dtype::float32, "dist::all_reduce_sum", "expects float32, got ", dtype_name(x.dtype()));
  Tensor out = x.detach().clone();
  comm.allreduce_sum(std::span<float>(out.data<float>(), static_cast<std::size_t>(out.numel())));
  return record_collective(out, "dist::all_reduce_sum", {x}, [&comm](const Tensor& g, const std::vector<bool>&) {
    return Grads{all_reduce_sum(g, comm)};
  });
}

Tensor exchange(const Tensor& x, const std::vector<std::int64_t>& send_rows, const std::vector<std::int64_t>& recv_rows,
                Communicator& comm, const Tensor& after) {
  const auto world = static_cast<std::size_t>(comm.size());
  LADON_CHECK(x.dim() == 2 && x.dtype() == Dtype::float32, "dist::exchange", "expects float32 rows [n, width], got ",
              dtype_name(x.dtype()), " ", shape_str(x.shape()));
  LADON_CHECK(send_rows.size() == world && recv_rows.size() == world, "dist::exchange", send_rows.size(), " send and ",
              recv_rows.size(), " receive counts for ", world, " ranks");
  const std::int64_t width = x.size(1);
  const std::int64_t sent = std::accumulate(send_rows.begin(), send_rows.end(), std::int64_t{0});
  const std::int64_t received = std::accumulate(recv_rows.begin(), recv_rows.end(), std::int64_t{0});
  LADON_CHECK(sent == x.size(0), "dist::exchange", "send counts add up to ", sent, " rows, x has ", x.size(0));
  const Tensor src = x.detach().contiguous();
  Tensor out = empty({received, width});
  comm.alltoallv(std::span<const float>(src.data<float>(), static_cast<std::size_t>(src.numel())),
                 element_counts(send_rows, width),
                 std::span<float>(out.data<float>(), static_cast<std::size_t>(out.numel())),
                 element_counts(recv_rows, width));
  std::vector<Tensor> inputs{x};
  if (after.defined()) inputs.push_back(after);
  const Shape after_shape = after.defined() ? after.shape() : Shape{};
  return record_collective(out, "dist::exchange", std::move(inputs),
                           [&comm, send_rows, recv_rows, after_shape, has_after = after.defined()](
                               const Tensor& g, const std::vector<bool>&) {
                             Grads grads{exchange(g, recv_rows, send_rows, comm)};
                             if (has_after) grads.push_back(zeros(after_shape));
                             return grads;
                           });
}

}  // namespace ladon::dist
