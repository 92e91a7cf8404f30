#include "parallel.h"

#include <cblas.h>
#include <tbb/global_control.h>
#include <tbb/info.h>
#include <tbb/parallel_for.h>

#include <algorithm>
#include <atomic>
#include <memory>
#include <mutex>

namespace ladon {
namespace {

struct ThreadSettings {
  std::mutex mutex;
  std::atomic<int> threads = 0;  // read by every parallel_for, from any thread
  std::unique_ptr<tbb::global_control> control;
  ThreadSettings() {
    // OpenBLAS would otherwise start one spinning thread per core and fight TBB's workers.
    openblas_set_num_threads(1);
    threads = tbb::info::default_concurrency();
  }
};

ThreadSettings& settings() {
  static ThreadSettings instance;
  return instance;
}

}  // namespace

void set_num_threads(int n) {
  ThreadSettings& s = settings();
  std::lock_guard lock(s.mutex);
  const int threads = n > 0 ? n : tbb::info::default_concurrency();
  s.control = std::make_unique<tbb::global_control>(tbb::global_control::max_allowed_parallelism,
                                                    static_cast<std::size_t>(threads));
  s.threads = threads;
}

int num_threads() { return settings().threads; }

void parallel_for(std::int64_t begin, std::int64_t end, std::int64_t grain,
                  const std::function<void(std::int64_t, std::int64_t)>& fn) {
  const std::int64_t n = end - begin;
  if (n <= 0) return;
  const std::int64_t chunks = std::min<std::int64_t>(num_threads(), n / std::max<std::int64_t>(grain, 1));
  if (chunks <= 1) {
    fn(begin, end);
    return;
  }
  tbb::parallel_for(std::int64_t{0}, chunks, [&](std::int64_t c) {
    fn(begin + n * c / chunks, begin + n * (c + 1) / chunks);
  });
}

}  // namespace ladon
