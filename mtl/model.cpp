#include "model.h"

#include "../nn/activation.h"
#include "../nn/linear.h"

namespace ladon::mtl {

MultiTaskModel::MultiTaskModel(std::vector<TaskSpec> tasks) : tasks_(std::move(tasks)) {
  LADON_CHECK(!tasks_.empty(), "MultiTaskModel", "needs at least one task");
  for (const TaskSpec& t : tasks_)
    LADON_CHECK(t.out > 0, "MultiTaskModel", "task '", t.name, "' has output size ", t.out);
}

nn::Sequential mlp(std::int64_t in, const std::vector<std::int64_t>& hidden, std::int64_t out, bool relu_last,
                   Generator& gen) {
  nn::Sequential net;
  std::int64_t width = in;
  for (std::int64_t h : hidden) {
    net.push_back(nn::Linear(width, h, {}, gen));
    net.push_back(nn::ReLU());
    width = h;
  }
  net.push_back(nn::Linear(width, out, {}, gen));
  if (relu_last) net.push_back(nn::ReLU());
  return net;
}

}  // namespace ladon::mtl
