#include "cross_stitch.h"

#include "../core/ops.h"

namespace ladon::mtl {

CrossStitch::CrossStitch(const CrossStitchOptions& options, Generator& gen) : MultiTaskModel(options.tasks) {
  LADON_CHECK(options.in > 0 && !options.hidden.empty(), "CrossStitch", "needs in > 0 and at least one layer, got in=",
              options.in, " hidden=", shape_str(options.hidden));
  const std::int64_t tasks = static_cast<std::int64_t>(options.tasks.size());
  for (const TaskSpec& t : tasks_) {
    Column column;
    std::int64_t width = options.in;
    for (std::int64_t h : options.hidden) {
      LADON_CHECK(h > 0, "CrossStitch", "hidden has a layer of size ", h);
      column.layers.emplace_back(width, h, nn::LinearOptions{}, gen);
      width = h;
    }
    columns_.add(t.name, std::move(column));
  }
  const float off = tasks > 1 ? 0.1f / static_cast<float>(tasks - 1) : 0.0f;
  for (std::size_t l = 0; l < options.hidden.size(); ++l) {
    Tensor alpha = full({tasks, tasks}, off);
    for (std::int64_t t = 0; t < tasks; ++t) alpha.data<float>()[t * tasks + t] = tasks > 1 ? 0.9f : 1.0f;
    stitches_.push_back(alpha.requires_grad_());
  }
  towers_ = TaskTowers(options.hidden.back(), tasks_, gen);
}

std::vector<Tensor> CrossStitch::forward(const Tensor& x) {
  const std::size_t tasks = num_tasks();
  std::vector<Tensor> h(tasks, x);
  std::vector<Tensor> representation;  // the stitched outputs: the units reach the losses only through them
  for (std::size_t l = 0; l < stitches_.size(); ++l) {
    for (std::size_t t = 0; t < tasks; ++t) h[t] = relu(columns_[t].layers[l](h[t]));
    // Mix all columns at once: alpha [T, T] @ stacked [T, batch * width].
    const Tensor stacked = stack(h, 0);
    const Shape shape = stacked.shape();
    const Tensor mixed = matmul(stitches_[l], stacked.reshape({shape[0], -1})).reshape(shape);
    representation.push_back(mixed);
    for (std::size_t t = 0; t < tasks; ++t) h[t] = mixed.narrow(0, static_cast<std::int64_t>(t), 1).squeeze(0);
  }
  set_representation(std::move(representation));
  return towers_.forward(h);
}

void CrossStitch::visit(Visitor& v) {
  v("columns", columns_);
  for (std::size_t l = 0; l < stitches_.size(); ++l) v("stitch." + std::to_string(l), stitches_[l]);
  v("towers", towers_);
}

}  // namespace ladon::mtl
