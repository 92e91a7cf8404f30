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
};
AllocatorStats allocator_stats();
void release_cached_memory();  // give every cached buffer back to the system

}  // namespace ladon
