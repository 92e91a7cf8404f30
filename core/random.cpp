#include "random.h"

#include <cmath>
#include <numeric>

namespace ladon {
namespace {
std::uint64_t splitmix64(std::uint64_t& x) {
  std::uint64_t z = (x += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}
std::uint64_t rotl(std::uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
}  // namespace

void Generator::seed_(std::uint64_t seed) {
  const Guard hold(*this);
  for (auto& s : state_) s = splitmix64(seed);
  has_spare_normal_ = false;
}

std::uint64_t Generator::next_u64() {
  const Guard hold(*this);
  const std::uint64_t result = rotl(state_[1] * 5, 7) * 9;
  const std::uint64_t t = state_[1] << 17;
  state_[2] ^= state_[0];
  state_[3] ^= state_[1];
  state_[1] ^= state_[2];
  state_[0] ^= state_[3];
  state_[2] ^= t;
  state_[3] = rotl(state_[3], 45);
  return result;
}

Generator::State Generator::state() const {
  const Guard hold(*this);
  return {{state_[0], state_[1], state_[2], state_[3]}, has_spare_normal_, spare_normal_};
}

void Generator::set_state(const State& state) {
  LADON_CHECK((state.words[0] | state.words[1] | state.words[2] | state.words[3]) != 0, "Generator::set_state",
              "the all-zero state is not a state of xoshiro256 (it would draw 0 forever)");
  const Guard hold(*this);
  for (int i = 0; i < 4; ++i) state_[i] = state.words[i];
  has_spare_normal_ = state.has_spare_normal;
  spare_normal_ = state.spare_normal;
}

double Generator::uniform() { return static_cast<double>(next_u64() >> 11) * 0x1.0p-53; }

double Generator::normal() {
  const Guard hold(*this);
  if (has_spare_normal_) {
    has_spare_normal_ = false;
    return spare_normal_;
  }
  double u1 = uniform();
  while (u1 <= 0.0) u1 = uniform();
  const double u2 = uniform();
  const double radius = std::sqrt(-2.0 * std::log(u1));
  spare_normal_ = radius * std::sin(2.0 * M_PI * u2);
  has_spare_normal_ = true;
  return radius * std::cos(2.0 * M_PI * u2);
}

std::uint64_t Generator::below(std::uint64_t n) {
  LADON_CHECK(n > 0, "Generator::below", "n must be positive, got 0");
  const Guard hold(*this);
  // Rejection sampling on the top of the range: unbiased.
  const std::uint64_t limit = UINT64_MAX - UINT64_MAX % n;
  while (true) {
    const std::uint64_t r = next_u64();
    if (r < limit) return r % n;
  }
}

Generator& default_generator() {
  static Generator& gen = []() -> Generator& {
    static Generator shared;
    static std::recursive_mutex lock;
    shared.lock_ = &lock;
    return shared;
  }();
  return gen;
}

void manual_seed(std::uint64_t seed) { default_generator().seed_(seed); }

Tensor uniform(const Shape& shape, double low, double high, Generator& gen) {
  LADON_CHECK(std::isfinite(low) && std::isfinite(high) && low <= high, "uniform",
              "needs finite low <= high, got low ", low, ", high ", high);
  Tensor out = empty(shape);
  float* p = out.data<float>();
  const Generator::Guard hold(gen);
  for (std::int64_t i = 0; i < out.numel(); ++i) p[i] = static_cast<float>(low + (high - low) * gen.uniform());
  return out;
}

Tensor rand(const Shape& shape, Generator& gen) { return uniform(shape, 0.0, 1.0, gen); }

Tensor normal(const Shape& shape, double mean, double std, Generator& gen) {
  LADON_CHECK(std::isfinite(mean) && std::isfinite(std) && std >= 0, "normal",
              "needs a finite mean and a finite std >= 0, got mean ", mean, ", std ", std);
  Tensor out = empty(shape);
  float* p = out.data<float>();
  const Generator::Guard hold(gen);
  for (std::int64_t i = 0; i < out.numel(); ++i) p[i] = static_cast<float>(mean + std * gen.normal());
  return out;
}

Tensor randn(const Shape& shape, Generator& gen) { return normal(shape, 0.0, 1.0, gen); }

Tensor randperm(std::int64_t n, Generator& gen) {
  LADON_CHECK(n >= 0, "randperm", "n must be non-negative, got ", n);
  Tensor out = empty({n}, Dtype::int64);
  std::int64_t* p = out.data<std::int64_t>();
  std::iota(p, p + n, std::int64_t{0});
  const Generator::Guard hold(gen);
  for (std::int64_t i = n - 1; i > 0; --i) std::swap(p[i], p[gen.below(static_cast<std::uint64_t>(i) + 1)]);
  return out;
}

}  // namespace ladon
