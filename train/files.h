// Files the train/ layer writes: an output folder checked up front, and whole files replaced
// atomically (written next to the target, then renamed), so a crash never leaves half a file and
// never destroys the previous one.
#pragma once

#include "layer_fence.h"

#include <string>

namespace ladon::train {

// Creates `dir` (and its parents) when needed and checks a file can be created in it; throws
// ladon::Error naming `op`, the folder and the system's reason otherwise.
void ensure_writable_dir(const std::string& dir, const char* op);

// Writes `text` to `path` through `path.tmp.<pid>` and a rename; throws ladon::Error naming `op`.
void write_file_atomic(const std::string& path, const std::string& text, const char* op);

}  // namespace ladon::train
