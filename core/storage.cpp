#include "storage.h"

#include <algorithm>
#include <bit>
#include <cstdlib>
#include <mutex>
#include <new>
#include <unordered_map>
#include <vector>

namespace ladon {
namespace {

constexpr std::size_t kAlignment = 64;

// Rounds a request up to a bucket: powers of two split into four steps, so at most 25% is wasted
// and recycled buffers fit many nearby sizes.
std::size_t bucket_size(std::size_t bytes) {
  if (bytes <= kAlignment) return kAlignment;
  const std::size_t power = std::bit_floor(bytes - 1);
  const std::size_t step = std::max<std::size_t>(power / 4, kAlignment);
  return (bytes + step - 1) / step * step;
}

struct Cache {
  std::mutex mutex;
  std::unordered_map<std::size_t, std::vector<void*>> free_lists;
  AllocatorStats stats;
};

Cache& cache() {
  static Cache* instance = new Cache;  // never destroyed: storages may outlive static destructors
  return *instance;
}

// Counted under the cache's mutex, which every allocation and release already takes: no extra
// synchronisation on the hot path.
void count_in_use(AllocatorStats& stats, std::size_t bytes) {
  stats.live_bytes += bytes;
  stats.peak_bytes = std::max(stats.peak_bytes, stats.live_bytes);
}

}  // namespace

Storage::Storage(std::size_t bytes) : data_(nullptr), bytes_(bucket_size(bytes)) {
  Cache& c = cache();
  {
    std::lock_guard lock(c.mutex);
    auto it = c.free_lists.find(bytes_);
    if (it != c.free_lists.end() && !it->second.empty()) {
      data_ = it->second.back();
      it->second.pop_back();
      c.stats.cache_hits++;
      c.stats.cached_bytes -= bytes_;
      count_in_use(c.stats, bytes_);
      return;
    }
    c.stats.system_allocations++;
  }
  data_ = std::aligned_alloc(kAlignment, bytes_);
  if (data_ == nullptr) throw std::bad_alloc();
  std::lock_guard lock(c.mutex);
  count_in_use(c.stats, bytes_);
}

Storage::~Storage() {
  Cache& c = cache();
  std::lock_guard lock(c.mutex);
  c.free_lists[bytes_].push_back(data_);
  c.stats.cached_bytes += bytes_;
  c.stats.live_bytes -= bytes_;
}

AllocatorStats allocator_stats() {
  Cache& c = cache();
  std::lock_guard lock(c.mutex);
  return c.stats;
}

void reset_peak_bytes() {
  Cache& c = cache();
  std::lock_guard lock(c.mutex);
  c.stats.peak_bytes = c.stats.live_bytes;
}

void release_cached_memory() {
  Cache& c = cache();
  std::lock_guard lock(c.mutex);
  for (auto& [bytes, list] : c.free_lists)
    for (void* p : list) std::free(p);
  c.free_lists.clear();
  c.stats.cached_bytes = 0;
}

}  // namespace ladon
