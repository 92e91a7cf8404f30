#include "expert_parallel.h"

#include <numeric>

#include "../core/autograd.h"
#include "../core/error.h"
#include "../core/ops.h"

namespace ladon::dist {

namespace {
Tensor int_tensor(std::vector<std::int64_t> values) {
  const auto n = static_cast<std::int64_t>(values.size());
  return tensor(std::move(values), {n});
}
}  // namespace

ExpertParallel::ExpertParallel(mtl::SparseMoE& layer, Communicator& comm) : layer_(layer), comm_(comm) {
  LADON_CHECK(layer.dispatch() == nullptr, "ExpertParallel", "the layer already has an expert dispatch");
  LADON_CHECK(layer.held_first() == 0 && layer.held_last() == layer.num_experts(), "ExpertParallel",
              "the layer holds only experts [", layer.held_first(), ", ", layer.held_last(), ") of ",
              layer.num_experts(), ": give it the whole layer (the same on every rank)");
  layer_.hold_experts(first_expert(comm.rank()), first_expert(comm.rank() + 1));
  layer_.set_dispatch(this);
}

ExpertParallel::~ExpertParallel() { layer_.set_dispatch(nullptr); }

std::int64_t ExpertParallel::first_expert(int rank) const {
  return static_cast<std::int64_t>(rank) * layer_.num_experts() / comm_.size();
}

int ExpertParallel::owner(std::int64_t expert) const {
  LADON_CHECK(expert >= 0 && expert < layer_.num_experts(), "ExpertParallel", "expert ", expert, " out of range for ",
              layer_.num_experts(), " experts");
  int r = 0;
  while (expert >= first_expert(r + 1)) ++r;
  return r;
}

std::vector<ShardedLayer> sharded_layers(nn::Module& model) {
  struct Finder : nn::Module::Visitor {
    std::vector<ShardedLayer> found;
    std::string prefix;
    void operator()(const std::string&, Tensor&) override {}
    void buffer(const std::string&, Tensor&) override {}
    void operator()(const std::string& name, nn::Module& child) override {
      const std::string full = prefix.empty() ? name : name.empty() ? prefix : prefix + "." + name;
      if (auto* moe = dynamic_cast<mtl::SparseMoE*>(&child);
          moe && dynamic_cast<ExpertParallel*>(moe->dispatch()) != nullptr)
        found.push_back({full, moe});
      const std::string saved = prefix;
      prefix = full;
      child.visit(*this);
      prefix = saved;
    }
  } finder;
  finder("", model);
  return finder.found;
}

std::vector<Tensor> rank_local_parameters(nn::Module& model) {
  std::vector<Tensor> local;
  for (const ShardedLayer& s : sharded_layers(model))
    for (std::int64_t e = s.layer->held_first(); e < s.layer->held_last(); ++e)
      for (const Tensor& p : s.layer->expert(e).parameters()) local.push_back(p);
  return local;
}

Tensor ExpertParallel::sum_over_tokens(const Tensor& x) { return all_reduce_sum(x, comm_); }

std::vector<Tensor> ExpertParallel::run(mtl::SparseMoE& layer, const std::vector<Tensor>& routed) {
  LADON_CHECK(&layer == &layer_, "ExpertParallel", "called for a layer it was not made for");
  const auto E = static_cast<std::size_t>(layer.num_experts());
  const auto W = static_cast<std::size_t>(comm_.size());
  const auto me = static_cast<std::size_t>(comm_.rank());
  const std::int64_t out = layer.out_features();
  LADON_CHECK(routed.size() == E, "ExpertParallel", routed.size(), " routed blocks for ", E, " experts");

  // 1. Every rank's row count per expert: C[s * E + e].
  std::vector<float> mine(E);
  for (std::size_t e = 0; e < E; ++e) mine[e] = static_cast<float>(routed[e].size(0));
  const std::vector<float> all = comm_.allgatherv(mine);
  const auto C = [&](std::size_t s, std::size_t e) { return static_cast<std::int64_t>(all[s * E + e]); };
  const auto first = [&](std::size_t r) { return static_cast<std::size_t>(first_expert(static_cast<int>(r))); };
  std::vector<std::int64_t> send_rows(W, 0), recv_rows(W, 0);
  for (std::size_t r = 0; r < W; ++r)
    for (std::size_t e = first(r); e < first(r + 1); ++e) send_rows[r] += C(me, e);
  for (std::size_t s = 0; s < W; ++s)
    for (std::size_t e = first(me); e < first(me + 1); ++e) recv_rows[s] += C(s, e);

  // 2. Rows to their owners (cat keeps expert order, so each owner's block is contiguous).
  const Tensor received = exchange(cat(routed, 0), send_rows, recv_rows, comm_);

  // Each local expert on its rows from every rank; Y stacks the outputs expert by expert.
  std::vector<Tensor> outputs;
  std::vector<std::int64_t> source_offset(W, 0);  // where source s's block starts in `received`
  std::exclusive_scan(recv_rows.begin(), recv_rows.end(), source_offset.begin(), std::int64_t{0});
  std::vector<std::int64_t> y_offset;  // where expert e's outputs start in Y
  std::int64_t y_rows = 0;
  rows_ = 0;
  {
    std::vector<std::int64_t> within(W, 0);  // rows of earlier local experts inside each source block
    for (std::size_t e = first(me); e < first(me + 1); ++e) {
      std::vector<std::int64_t> index;
      for (std::size_t s = 0; s < W; ++s) {
        for (std::int64_t j = 0; j < C(s, e); ++j) index.push_back(source_offset[s] + within[s] + j);
        within[s] += C(s, e);
      }
      y_offset.push_back(y_rows);
      y_rows += static_cast<std::int64_t>(index.size());
      rows_ += static_cast<std::int64_t>(index.size());
      outputs.push_back(index.empty() ? zeros({0, out})
                                      : layer.expert(static_cast<std::int64_t>(e))
                                            .forward(index_select(received, 0, int_tensor(std::move(index)))));
    }
  }
  // 3. Outputs back, ordered by the rank they came from, then expert: the reverse exchange.
  std::vector<std::int64_t> back_order;
  {
    std::vector<std::int64_t> within(E, 0);  // rows of earlier sources inside expert e's outputs
    for (std::size_t s = 0; s < W; ++s)
      for (std::size_t e = first(me); e < first(me + 1); ++e) {
        const std::int64_t base = y_offset[e - first(me)] + within[e];
        for (std::int64_t j = 0; j < C(s, e); ++j) back_order.push_back(base + j);
        within[e] += C(s, e);
      }
  }
  const Tensor y = outputs.empty() ? zeros({0, out}) : cat(outputs, 0);
  const Tensor back_send = back_order.empty() ? zeros({0, out}) : index_select(y, 0, int_tensor(std::move(back_order)));
  const Tensor back = exchange(back_send, recv_rows, send_rows, comm_, received);

  // back stacks the outputs in the order of cat(routed): expert by expert.
  std::vector<Tensor> results(E);
  std::int64_t offset = 0;
  for (std::size_t e = 0; e < E; ++e) {
    const std::int64_t n = routed[e].size(0);
    results[e] = n == 0 ? zeros({0, out}) : back.narrow(0, offset, n);
    offset += n;
  }
  return results;
}

}  // namespace ladon::dist
