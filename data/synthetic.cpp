#include "synthetic.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "../core/random.h"

namespace ladon::data {
namespace {

double dot(const std::vector<double>& a, const std::vector<double>& b) {
  double s = 0;
  for (std::size_t i = 0; i < a.size(); ++i) s += a[i] * b[i];
  return s;
}

}  // namespace

Dataset mmoe_synthetic(const SyntheticOptions& o) {
  constexpr const char* kOp = "mmoe_synthetic";
  LADON_CHECK(o.samples >= 0, kOp, "samples must be non-negative, got ", o.samples);
  LADON_CHECK(o.dim >= 2, kOp, "dim must be at least 2 (two orthogonal directions), got ", o.dim);
  LADON_CHECK(std::abs(o.correlation) <= 1.0, kOp, "correlation must be in [-1, 1], got ", o.correlation);
  LADON_CHECK(std::isfinite(o.scale), kOp, "scale must be finite, got ", o.scale);
  LADON_CHECK(o.sinusoids >= 0, kOp, "sinusoids must be non-negative, got ", o.sinusoids);
  LADON_CHECK(o.noise_std >= 0, kOp, "noise_std must be non-negative, got ", o.noise_std);

  Generator gen(o.seed);
  const auto d = static_cast<std::size_t>(o.dim);
  auto gaussian = [&](std::size_t n) {
    std::vector<double> v(n);
    for (double& e : v) e = gen.normal();
    return v;
  };

  // Gram-Schmidt. A Gaussian u2 parallel to u1 has probability zero, but redraw rather than divide
  // by a vanishing norm.
  std::vector<double> u1 = gaussian(d);
  const double n1 = std::sqrt(dot(u1, u1));
  for (double& e : u1) e /= n1;
  std::vector<double> u2;
  double n2 = 0;
  do {
    u2 = gaussian(d);
    const double along = dot(u2, u1);
    for (std::size_t i = 0; i < d; ++i) u2[i] -= along * u1[i];
    n2 = std::sqrt(dot(u2, u2));
  } while (n2 < 1e-6);
  for (double& e : u2) e /= n2;

  const double c = o.scale, p = o.correlation, q = std::sqrt(std::max(0.0, 1.0 - p * p));
  std::vector<double> w1(d), w2(d);
  for (std::size_t i = 0; i < d; ++i) {
    w1[i] = c * u1[i];
    w2[i] = c * (p * u1[i] + q * u2[i]);
  }
  const std::vector<double> alpha = gaussian(static_cast<std::size_t>(o.sinusoids));
  const std::vector<double> beta = gaussian(static_cast<std::size_t>(o.sinusoids));

  Dataset out;
  out.x = randn({o.samples, o.dim}, gen);
  Tensor y1 = empty({o.samples, 1});
  Tensor y2 = empty({o.samples, 1});
  const float* x = out.x.data<float>();
  float* y1_p = y1.data<float>();
  float* y2_p = y2.data<float>();
  auto label = [&](double s) {
    double y = s;
    for (std::size_t i = 0; i < alpha.size(); ++i) y += std::sin(alpha[i] * s + beta[i]);
    return y;
  };
  for (std::int64_t r = 0; r < o.samples; ++r) {
    const float* row = x + r * o.dim;
    double s1 = 0, s2 = 0;
    for (std::size_t i = 0; i < d; ++i) {
      s1 += w1[i] * row[i];
      s2 += w2[i] * row[i];
    }
    y1_p[r] = static_cast<float>(label(s1));
    y2_p[r] = static_cast<float>(label(s2));
  }
  // Noise last, so it never shifts the draws above.
  for (std::int64_t r = 0; r < o.samples; ++r) {
    y1_p[r] += static_cast<float>(o.noise_std * gen.normal());
    y2_p[r] += static_cast<float>(o.noise_std * gen.normal());
  }
  out.y = {y1, y2};
  out.task_names = {"task1", "task2"};
  return out;
}

}  // namespace ladon::data
