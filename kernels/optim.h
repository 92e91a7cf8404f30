// One-pass optimizer updates over a parameter's elements.
#pragma once

#include <cstdint>

namespace ladon::kernels {

// SGD with optional momentum buffer (may be null when momentum == 0) and L2 weight decay.
void sgd_update(std::int64_t n, float* param, const float* grad, float* momentum_buffer, float lr, float momentum,
                float dampening, float weight_decay, bool nesterov, bool first_step);

// Adam (decoupled_weight_decay = false: L2 added to the gradient) or AdamW (true).
void adam_update(std::int64_t n, float* param, const float* grad, float* exp_avg, float* exp_avg_sq, float lr,
                 float beta1, float beta2, float eps, float weight_decay, bool decoupled_weight_decay,
                 std::int64_t step);

}  // namespace ladon::kernels
