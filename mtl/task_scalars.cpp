#include "task_scalars.h"

#include <algorithm>

#include "../core/autograd.h"
#include "../core/ops.h"

namespace ladon::mtl {

TaskScalars::TaskScalars(std::size_t tasks, float initial, nn::AdamOptions options)
    : values_(full({static_cast<std::int64_t>(tasks)}, initial).requires_grad_()),
      adam_(std::make_unique<nn::Adam>(std::vector<Tensor>{values_}, options)) {}

std::vector<double> TaskScalars::values() const {
  const std::vector<float> v = values_.to_vector<float>();
  return {v.begin(), v.end()};
}

void TaskScalars::step(const std::vector<double>& gradient) {
  const std::vector<float> g(gradient.begin(), gradient.end());
  values_.set_grad(ladon::tensor(g, {static_cast<std::int64_t>(g.size())}));
  adam_->step();
}

void TaskScalars::save(nn::StateDict& state, const std::string& key) const {
  state.set(key, values_.detach().clone());
  nn::save_nested(state, "adam", adam_->state_dict());
}

void TaskScalars::check(const nn::StateDict& state, const std::string& key, const char* op) const {
  const Tensor& t = state.tensor(key, op);
  LADON_CHECK(t.dtype() == Dtype::float32 && t.dim() == 1 && t.numel() == values_.numel(), op, "the state's ", key,
              " is ", shape_str(t.shape()), " for ", values_.numel(), " tasks");
  adam_->check_state_dict(nn::nested(state, "adam"));
}

void TaskScalars::load(const nn::StateDict& state, const std::string& key) {
  NoGradGuard no_grad;
  const Tensor c = state.tensor(key).contiguous();
  std::copy(c.data<float>(), c.data<float>() + c.numel(), values_.data<float>());
  adam_->load_state_dict(nn::nested(state, "adam"));
}

}  // namespace ladon::mtl
