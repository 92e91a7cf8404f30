// Checkpoints under data parallelism: one file, independent of the world size. Every rank holds
// the same parameters and optimizer state, so rank 0 alone writes nn::save_checkpoint's file and
// any number of ranks (one, or more or fewer than wrote it) loads it. Save and load are collective:
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
