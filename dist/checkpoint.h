// Checkpoints under data and expert parallelism: one file, independent of the world size, the file
// one process training the whole model would write. Replicated parameters and optimizer state come
// from rank 0; the experts of expert-parallel layers (dist::ExpertParallel), which only their owner
// holds, are gathered to rank 0 with their optimizer state, renumbered to one process's parameter
// order (the optimizer must then be an nn::Optimizer). Any number of ranks (one, or more or fewer
// than wrote it) loads the file: each takes the replicated part and the experts it owns at its
// world size, so the same file resumes on 4 ranks, 2 or 1. Save and load are collective:
// every rank of comm calls them; save returns when the file is complete and renamed into place,
// and a failure on rank 0 (a full disk) is thrown on every rank with rank 0's message.
#pragma once

#include "layer_fence.h"

#include <string>

#include "../nn/checkpoint.h"
#include "comm.h"

namespace ladon::dist {

void save_checkpoint(const std::string& path, nn::Module& model, const nn::SaveOptions& options = {},
                     Communicator& comm = world());
nn::LoadedCheckpoint load_checkpoint(const std::string& path, nn::Module& model, const nn::LoadOptions& options = {},
                                     Communicator& comm = world());

}  // namespace ladon::dist
