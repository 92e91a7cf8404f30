#include "cross_stitch.h"

#include "../core/ops.h"

namespace ladon::mtl {

CrossStitch::CrossStitch(const CrossStitchOptions& options, Generator& gen) : MultiTaskModel(options.tasks) {
  LADON_CHECK(options.in > 0 && !options.hidden.empty(), "CrossStitch", "needs in > 0 and at least one layer, got in=",
              options.in, " hidden=", shape_str(options.hidden));
  const std::int64_t tasks = static_cast<std::int64_t>(options.tasks.size());
  for (std::int64_t t = 0; t < tasks; ++t) {
    std::vector<nn::Linear> column;
    std::int64_t width = options.in;
    for (std::int64_t h : options.hidden) {
      column.emplace_back(width, h, nn::LinearOptions{}, gen);
      width = h;
    }
    columns_.push_back(std::move(column));
  }
  const float off = tasks > 1 ? 0.1f / static_cast<float>(tasks - 1) : 0.0f;
  for (std::size_t l = 0; l < options.hidden.size(); ++l) {
    Tensor alpha = full({tasks, tasks}, off);
    for (std::int64_t t = 0; t < tasks; ++t) alpha.data<float>()[t * tasks + t] = tasks > 1 ? 0.9f : 1.0f;
    stitches_.push_back(alpha.requires_grad_());
  }
  for (const TaskSpec& t : options.tasks) towers_.push_back(mlp(options.hidden.back(), t.tower_hidden, t.out, false, gen));
}

std::vector<Tensor> CrossStitch::forward(const Tensor& x) {
  const std::size_t tasks = num_tasks();
  std::vector<Tensor> h(tasks, x);
  for (std::size_t l = 0; l < stitches_.size(); ++l) {
    for (std::size_t t = 0; t < tasks; ++t) h[t] = relu(columns_[t][l](h[t]));
    // Mix all columns at once: alpha [T, T] @ stacked [T, batch * width].
    const Tensor stacked = stack(h, 0);
    const Shape shape = stacked.shape();
    const Tensor mixed = matmul(stitches_[l], stacked.reshape({shape[0], -1})).reshape(shape);
    for (std::size_t t = 0; t < tasks; ++t) h[t] = mixed.narrow(0, static_cast<std::int64_t>(t), 1).squeeze(0);
  }
  std::vector<Tensor> outputs;
  for (std::size_t t = 0; t < tasks; ++t) outputs.push_back(towers_[t](h[t]));
  return outputs;
}

void CrossStitch::visit(Visitor& v) {
  for (std::size_t t = 0; t < columns_.size(); ++t)
    for (std::size_t l = 0; l < columns_[t].size(); ++l)
      v("columns." + tasks_[t].name + "." + std::to_string(l), columns_[t][l]);
  for (std::size_t l = 0; l < stitches_.size(); ++l) v("stitch." + std::to_string(l), stitches_[l]);
  for (std::size_t t = 0; t < towers_.size(); ++t) v("towers." + tasks_[t].name, towers_[t]);
}

}  // namespace ladon::mtl
