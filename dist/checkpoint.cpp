#include "checkpoint.h"

#include <cstdint>
#include <vector>

#include "../core/error.h"

namespace ladon::dist {

void save_checkpoint(const std::string& path, nn::Module& model, const nn::SaveOptions& options, Communicator& comm) {
  // Rank 0's outcome, broadcast: empty when the file was written, otherwise its error message.
  std::vector<char> error;
  if (comm.rank() == 0) {
    try {
      nn::save_checkpoint(path, model, options);
    } catch (const Error& e) {
      const std::string what = e.what();
      error.assign(what.begin(), what.end());
    }
  }
  comm.broadcast(error, 0);
  if (!error.empty()) throw Error(std::string(error.begin(), error.end()));
}

nn::LoadedCheckpoint load_checkpoint(const std::string& path, nn::Module& model, const nn::LoadOptions& options,
                                     Communicator& comm) {
  // Every rank reads the file itself. When any rank fails (the file is missing on its node), every
  // rank throws the first failing rank's message, so none goes on training alone.
  nn::LoadedCheckpoint loaded;
  std::string what;
  try {
    loaded = nn::load_checkpoint(path, model, options);
  } catch (const Error& e) {
    what = e.what();
  }
  std::vector<std::int64_t> failed(static_cast<std::size_t>(comm.size()), 0);
  failed[static_cast<std::size_t>(comm.rank())] = what.empty() ? 0 : 1;
  comm.allreduce_sum(failed);
  for (int r = 0; r < comm.size(); ++r) {
    if (!failed[static_cast<std::size_t>(r)]) continue;
    std::vector<char> message(what.begin(), what.end());
    comm.broadcast(message, r);
    throw Error(std::string(message.begin(), message.end()) +
                (r == comm.rank() ? "" : " (on rank " + std::to_string(r) + ")"));
  }
  return loaded;
}

}  // namespace ladon::dist
