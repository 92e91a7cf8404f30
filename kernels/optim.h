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

// RMSprop: square_avg always; grad_avg only when centered (else null); momentum_buffer only when
// momentum > 0 (else null). Buffers start at zero.
void rmsprop_update(std::int64_t n, float* param, const float* grad, float* square_avg, float* grad_avg,
                    float* momentum_buffer, float lr, float alpha, float eps, float weight_decay, float momentum);

// Adagrad with the step's decayed learning rate clr already computed: sum += g^2,
// param -= clr g / (sqrt(sum) + eps), g = grad + weight_decay param.
void adagrad_update(std::int64_t n, float* param, const float* grad, float* sum, float clr, float eps,
                    float weight_decay);

// Row forms for the row-sparse gradient of a [num, dim] table, weight decay 0 (decay would touch
// every row): for k < n, row rows[k] of the table and of each state array (at rows[k] * dim) takes
// gradient row k (grad + k * dim); no other row is read or written. Every element is computed as
// by the flat kernel, to the bit. Rows are prefetched a few ahead. SGD: no momentum (lazy momentum
// would differ from the dense update).
void sgd_update_rows(std::int64_t n, const std::int64_t* rows, std::int64_t dim, float* param, const float* grad,
                     float lr);
void adam_update_rows(std::int64_t n, const std::int64_t* rows, std::int64_t dim, float* param, const float* grad,
                      float* exp_avg, float* exp_avg_sq, float lr, float beta1, float beta2, float eps,
                      std::int64_t step);
void adagrad_update_rows(std::int64_t n, const std::int64_t* rows, std::int64_t dim, float* param, const float* grad,
                         float* sum, float clr, float eps);

}  // namespace ladon::kernels
