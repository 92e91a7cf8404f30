// The one door to parallelism: a thin wrapper over oneTBB. Nothing else in ladon starts threads,
// and OpenBLAS is pinned to one thread so it never competes with these workers.
#pragma once

#include "layer_fence.h"

#include <cstdint>
#include <functional>

namespace ladon {

// Bounds every parallel region in the process. n <= 0 restores the hardware default. Both are safe
// to call from any thread.
void set_num_threads(int n);
int num_threads();

// Runs fn(chunk_begin, chunk_end) over [begin, end) split into at most num_threads() chunks, none
// smaller than grain; ranges too small to split run inline on the calling thread.
void parallel_for(std::int64_t begin, std::int64_t end, std::int64_t grain,
                  const std::function<void(std::int64_t, std::int64_t)>& fn);

}  // namespace ladon
