// Storage: one 64-byte-aligned buffer, returned to a size-bucketed cache when the last tensor
// that uses it goes away, so a training step in steady state does not call the system allocator.
// Buffers of 4 MB or more are 2 MB-aligned and advised to use transparent huge pages (Linux).
#pragma once

#include "layer_fence.h"

#include <cstddef>
#include <memory>

namespace ladon {

class Storage {
 public:
  explicit Storage(std::size_t bytes);
  ~Storage();
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;

  void* data() const { return data_; }
  std::size_t bytes() const { return bytes_; }

 private:
  void* data_;
  std::size_t bytes_;
};

struct AllocatorStats {
  std::size_t system_allocations = 0;  // buffers taken from the system (cache misses)
  std::size_t cache_hits = 0;
  std::size_t cached_bytes = 0;  // free bytes held in the cache now
  // Bytes of tensor storage in use now (bucket sizes: what the buffers really hold), and the most
  // in use at once since the last reset_peak_bytes(): what a method's gradient copies cost, without
  // the process's code, the data set's file buffers or the cache's free buffers that RSS counts.
  std::size_t live_bytes = 0;
  std::size_t peak_bytes = 0;
};
AllocatorStats allocator_stats();
void reset_peak_bytes();       // peak_bytes = live_bytes: start measuring a new stretch of work
void release_cached_memory();  // give every cached buffer back to the system

}  // namespace ladon
