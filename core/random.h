// Seedable random numbers. Every random thing in ladon (init, dropout, shuffling, data generators)
// takes a Generator, defaulting to the process-wide one that manual_seed() resets.
#pragma once

#include "layer_fence.h"

#include <cstdint>

#include "tensor.h"

namespace ladon {

class Generator {
 public:
  explicit Generator(std::uint64_t seed = 0x1adc0de) { seed_(seed); }
  void seed_(std::uint64_t seed);
  std::uint64_t next_u64();                           // xoshiro256**
  double uniform();                                   // in [0, 1)
  double normal();                                    // standard normal
  std::uint64_t below(std::uint64_t n);               // uniform integer in [0, n)

  // The stream's exact position, to save and restore it (checkpoints, resumed training).
  struct State {
    std::uint64_t words[4];
    bool has_spare_normal;
    double spare_normal;
  };
  State state() const;
  void set_state(const State& state);

 private:
  std::uint64_t state_[4];
  bool has_spare_normal_ = false;
  double spare_normal_ = 0;
};

Generator& default_generator();
void manual_seed(std::uint64_t seed);

Tensor rand(const Shape& shape, Generator& gen = default_generator());   // U[0, 1)
Tensor randn(const Shape& shape, Generator& gen = default_generator());  // N(0, 1)
Tensor uniform(const Shape& shape, double low, double high, Generator& gen = default_generator());
Tensor normal(const Shape& shape, double mean, double std, Generator& gen = default_generator());
Tensor randperm(std::int64_t n, Generator& gen = default_generator());  // int64

}  // namespace ladon
