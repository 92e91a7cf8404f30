#include "storage.h"

#include <algorithm>
#include <bit>
#include <cstdlib>
#include <mutex>
#include <new>
#include <unordered_map>
#include <vector>

#if defined(__linux__)
#include <sys/mman.h>
#endif

namespace ladon {
namespace {

constexpr std::size_t kAlignment = 64;
// Buffers of at least kHugeBytes start on a 2 MB boundary and ask Linux for transparent huge pages
// (most systems default to THP "madvise"). A large embedding table and its optimizer moments are
// read at random rows: with 4 KB pages every row is also a TLB miss and a page walk. Zen 5, a
// 4M-row table: the sparse step 0.149 -> 0.137 ms (bench/README.md). Smaller buffers keep 4 KB
// pages (no 2 MB rounding).
constexpr std::size_t kHugeBytes = std::size_t{4} << 20, kHugeAlignment = std::size_t{2} << 20;

void* allocate(std::size_t bytes) {
  if (bytes < kHugeBytes) return std::aligned_alloc(kAlignment, bytes);
  const std::size_t rounded = (bytes + kHugeAlignment - 1) / kHugeAlignment * kHugeAlignment;
  void* p = std::aligned_alloc(kHugeAlignment, rounded);
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  if (p != nullptr) madvise(p, rounded, MADV_HUGEPAGE);  // advice only: failure leaves 4 KB pages
#endif
  return p;
}

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
  data_ = allocate(bytes_);
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
