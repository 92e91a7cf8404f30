// Collectives as differentiable ops: they sit in the autograd graph, and backward runs the
// matching collective on every rank.
#pragma once

#include "layer_fence.h"

#include <cstdint>
#include <vector>

#include "../core/tensor.h"
#include "comm.h"

namespace ladon::dist {

// Differentiable collectives. all_reduce_sum: every rank gets the sum of every rank's x; its
// backward sums the gradients the same way. exchange: rank r's rows [offset_r, offset_r +
// send_rows[r]) of x go to rank r; the result stacks what arrives from ranks 0, 1, ... (recv_rows
// each); backward sends the gradient back the same way. Both record their node whenever gradients
// are being recorded, even when x needs none here, so every rank's backward runs the collective.
Tensor all_reduce_sum(const Tensor& x, Communicator& comm);
// `after` (optional): a tensor whose producer's backward must run after this op's, and on every
// rank that runs this one's, even where nothing else of it reaches the loss; it gets a zero
// gradient from here. ExpertParallel passes the rows the dispatch exchange received to the return
// exchange, so a rank that received no rows (or owns no expert) still joins the dispatch's backward.
Tensor exchange(const Tensor& x, const std::vector<std::int64_t>& send_rows, const std::vector<std::int64_t>& recv_rows,
                Communicator& comm, const Tensor& after = Tensor());

}  // namespace ladon::dist
