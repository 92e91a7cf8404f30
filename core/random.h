// Seedable random numbers. Every random thing in ladon (init, dropout, shuffling, data generators)
// takes a Generator, defaulting to the process-wide one that manual_seed() resets.
#pragma once

#include "layer_fence.h"

#include <cstdint>
#include <mutex>

#include "tensor.h"

namespace ladon {

// A Generator you make is yours, like any object: share it between threads only under your own
// lock. The process-wide default_generator() is shared by design, so it carries a lock that every
// draw takes; safe to call from any thread. Copies share the lock of the generator they copy.
class Generator {
 public:
  explicit Generator(std::uint64_t seed = 0x1adc0de) { seed_(seed); }
  void seed_(std::uint64_t seed);
  std::uint64_t next_u64();                           // xoshiro256**
  double uniform();                                   // in [0, 1)
  double normal();                                    // standard normal
  std::uint64_t below(std::uint64_t n);               // uniform integer in [0, n), n > 0

  // Holds the generator's lock (if it has one) over a run of draws, so that the run is one
  // unbroken sequence and each draw inside it pays no atomic operation.
  class Guard {
   public:
    explicit Guard(const Generator& gen) : lock_(gen.lock_) {
      if (lock_) lock_->lock();
    }
    ~Guard() {
      if (lock_) lock_->unlock();
    }
    Guard(const Guard&) = delete;
    Guard& operator=(const Guard&) = delete;

   private:
    std::recursive_mutex* lock_;
  };

  // The stream's exact position, to save and restore it (checkpoints, resumed training).
  struct State {
    std::uint64_t words[4];
    bool has_spare_normal;
    double spare_normal;
  };
  State state() const;
  void set_state(const State& state);

 private:
  friend Generator& default_generator();
  std::recursive_mutex* lock_ = nullptr;  // only the default generator's is set
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
