#include "optim.h"

#include <cmath>

#include "simd.h"

namespace ladon::kernels {

namespace {

// The row forms prefetch this many rows ahead: in a large table every row is a cache miss, and
// only many misses in flight hide them.
constexpr std::int64_t kRowsAhead = 16;

LADON_INLINE void prefetch_row(const float* row, std::int64_t dim) {
  for (std::int64_t i = 0; i < dim; i += 64 / static_cast<std::int64_t>(sizeof(float))) __builtin_prefetch(row + i, 1);
}

}  // namespace

LADON_INLINE void sgd_update_body(std::int64_t n, float* param, const float* grad, float* momentum_buffer, float lr,
                                  float momentum, float dampening, float weight_decay, bool nesterov, bool first_step) {
  for (std::int64_t i = 0; i < n; ++i) {
    float g = grad[i] + weight_decay * param[i];
    if (momentum_buffer) {
      float& buf = momentum_buffer[i];
      buf = first_step ? g : momentum * buf + (1.0f - dampening) * g;
      g = nesterov ? g + momentum * buf : buf;
    }
    param[i] -= lr * g;
  }
}

void sgd_update(std::int64_t n, float* param, const float* grad, float* momentum_buffer, float lr, float momentum,
                float dampening, float weight_decay, bool nesterov, bool first_step) {
  Multiversion<sgd_update_body>::run(n, param, grad, momentum_buffer, lr, momentum, dampening, weight_decay, nesterov,
                                     first_step);
}

LADON_INLINE void sgd_update_rows_body(std::int64_t n, const std::int64_t* rows, std::int64_t dim, float* param,
                                       const float* grad, float lr) {
  for (std::int64_t k = 0; k < n; ++k) {
    if (k + kRowsAhead < n) prefetch_row(param + rows[k + kRowsAhead] * dim, dim);
    sgd_update_body(dim, param + rows[k] * dim, grad + k * dim, nullptr, lr, 0.0f, 0.0f, 0.0f, false, false);
  }
}

void sgd_update_rows(std::int64_t n, const std::int64_t* rows, std::int64_t dim, float* param, const float* grad,
                     float lr) {
  Multiversion<sgd_update_rows_body>::run(n, rows, dim, param, grad, lr);
}

// The bias corrections of a step, computed once per call (two pow): the row form runs the flat body
// once per row.
struct AdamScale {
  float step_size, inv_sqrt_bias2;
};

inline AdamScale adam_scale(float lr, float beta1, float beta2, std::int64_t step) {
  const float bias1 = 1.0f - static_cast<float>(std::pow(beta1, static_cast<double>(step)));
  const float bias2 = 1.0f - static_cast<float>(std::pow(beta2, static_cast<double>(step)));
  return {lr / bias1, 1.0f / std::sqrt(bias2)};
}

LADON_INLINE void adam_update_body(std::int64_t n, float* param, const float* grad, float* exp_avg, float* exp_avg_sq,
                                   float lr, float beta1, float beta2, float eps, float weight_decay,
                                   bool decoupled_weight_decay, AdamScale scale) {
  const float decay = decoupled_weight_decay ? 1.0f - lr * weight_decay : 1.0f;
  const float l2 = decoupled_weight_decay ? 0.0f : weight_decay;
  for (std::int64_t i = 0; i < n; ++i) {
    const float g = grad[i] + l2 * param[i];
    exp_avg[i] = beta1 * exp_avg[i] + (1.0f - beta1) * g;
    exp_avg_sq[i] = beta2 * exp_avg_sq[i] + (1.0f - beta2) * g * g;
    const float denom = std::sqrt(exp_avg_sq[i]) * scale.inv_sqrt_bias2 + eps;
    param[i] = param[i] * decay - scale.step_size * exp_avg[i] / denom;
  }
}

void adam_update(std::int64_t n, float* param, const float* grad, float* exp_avg, float* exp_avg_sq, float lr,
                 float beta1, float beta2, float eps, float weight_decay, bool decoupled_weight_decay,
                 std::int64_t step) {
  Multiversion<adam_update_body>::run(n, param, grad, exp_avg, exp_avg_sq, lr, beta1, beta2, eps, weight_decay,
                                      decoupled_weight_decay, adam_scale(lr, beta1, beta2, step));
}

LADON_INLINE void adam_update_rows_body(std::int64_t n, const std::int64_t* rows, std::int64_t dim, float* param,
                                        const float* grad, float* exp_avg, float* exp_avg_sq, float lr, float beta1,
                                        float beta2, float eps, AdamScale scale) {
  for (std::int64_t k = 0; k < n; ++k) {
    if (k + kRowsAhead < n) {
      const std::int64_t ahead = rows[k + kRowsAhead];
      prefetch_row(param + ahead * dim, dim);
      prefetch_row(exp_avg + ahead * dim, dim);
      prefetch_row(exp_avg_sq + ahead * dim, dim);
    }
    const std::int64_t r = rows[k];
    adam_update_body(dim, param + r * dim, grad + k * dim, exp_avg + r * dim, exp_avg_sq + r * dim, lr, beta1, beta2,
                     eps, 0.0f, false, scale);
  }
}

void adam_update_rows(std::int64_t n, const std::int64_t* rows, std::int64_t dim, float* param, const float* grad,
                      float* exp_avg, float* exp_avg_sq, float lr, float beta1, float beta2, float eps,
                      std::int64_t step) {
  Multiversion<adam_update_rows_body>::run(n, rows, dim, param, grad, exp_avg, exp_avg_sq, lr, beta1, beta2, eps,
                                           adam_scale(lr, beta1, beta2, step));
}

LADON_INLINE void rmsprop_update_body(std::int64_t n, float* param, const float* grad, float* square_avg,
                                      float* grad_avg, float* momentum_buffer, float lr, float alpha, float eps,
                                      float weight_decay, float momentum) {
  for (std::int64_t i = 0; i < n; ++i) {
    const float g = grad[i] + weight_decay * param[i];
    square_avg[i] = alpha * square_avg[i] + (1.0f - alpha) * g * g;
    float variance = square_avg[i];
    if (grad_avg) {
      grad_avg[i] = alpha * grad_avg[i] + (1.0f - alpha) * g;
      variance -= grad_avg[i] * grad_avg[i];
    }
    const float scaled = g / (std::sqrt(variance) + eps);
    if (momentum_buffer) {
      momentum_buffer[i] = momentum * momentum_buffer[i] + scaled;
      param[i] -= lr * momentum_buffer[i];
    } else {
      param[i] -= lr * scaled;
    }
  }
}

void rmsprop_update(std::int64_t n, float* param, const float* grad, float* square_avg, float* grad_avg,
                    float* momentum_buffer, float lr, float alpha, float eps, float weight_decay, float momentum) {
  Multiversion<rmsprop_update_body>::run(n, param, grad, square_avg, grad_avg, momentum_buffer, lr, alpha, eps,
                                         weight_decay, momentum);
}

LADON_INLINE void adagrad_update_body(std::int64_t n, float* param, const float* grad, float* sum, float clr, float eps,
                                      float weight_decay) {
  for (std::int64_t i = 0; i < n; ++i) {
    const float g = grad[i] + weight_decay * param[i];
    sum[i] += g * g;
    param[i] -= clr * g / (std::sqrt(sum[i]) + eps);
  }
}

void adagrad_update(std::int64_t n, float* param, const float* grad, float* sum, float clr, float eps,
                    float weight_decay) {
  Multiversion<adagrad_update_body>::run(n, param, grad, sum, clr, eps, weight_decay);
}

LADON_INLINE void adagrad_update_rows_body(std::int64_t n, const std::int64_t* rows, std::int64_t dim, float* param,
                                           const float* grad, float* sum, float clr, float eps) {
  for (std::int64_t k = 0; k < n; ++k) {
    if (k + kRowsAhead < n) {
      const std::int64_t ahead = rows[k + kRowsAhead];
      prefetch_row(param + ahead * dim, dim);
      prefetch_row(sum + ahead * dim, dim);
    }
    const std::int64_t r = rows[k];
    adagrad_update_body(dim, param + r * dim, grad + k * dim, sum + r * dim, clr, eps, 0.0f);
  }
}

void adagrad_update_rows(std::int64_t n, const std::int64_t* rows, std::int64_t dim, float* param, const float* grad,
                         float* sum, float clr, float eps) {
  Multiversion<adagrad_update_rows_body>::run(n, rows, dim, param, grad, sum, clr, eps);
}

}  // namespace ladon::kernels
