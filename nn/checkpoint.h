// Checkpoints: a model's parameters and buffers (by dotted name) with optimizer, scheduler and
// early-stopping state and user metadata, in one versioned binary file with a checksum.
//
//   nn::StateDict meta;
//   meta.set("epoch", epoch);
//   meta.set("val_accuracy", acc);
//   nn::save_checkpoint("run/last.ckpt", model, {.optimizer = &opt, .scheduler = &sched, .metadata = meta});
//   ...
//   auto loaded = nn::load_checkpoint("run/last.ckpt", model, {.optimizer = &opt, .scheduler = &sched});
//   int first_epoch = loaded.metadata.integer("epoch") + 1;
//
// Saving writes `path.tmp.<pid>`, syncs it to disk and renames it over `path`, so a crash or kill
// mid-write leaves the previous checkpoint intact (and at worst a stray .tmp file, which the next
// save of the same path removes once no live process owns it). Loading reads
// and verifies the whole file (magic, version, size, CRC-32), then checks every part against the
// model and the given optimizer / scheduler before changing anything: on any error the model and
// the rest are untouched and the ladon::Error names the file and the problem (which tensor, the
// expected and found shapes, missing and unexpected keys).
//
// File format, version 1, little-endian:
//   "LADONCKP"  u32 version  u32 0  u64 payload_bytes  payload  u32 crc32(everything before it)
//   payload:  u32 sections, each: str name, u64 entries, each: str key, u8 kind, value
//     kind 0 tensor: u8 dtype (0 float32, 1 int64), u32 rank, i64 dims[rank], raw elements
//     kind 1 f64; kind 2 i64; kind 3 str;     str = u32 length + bytes
#pragma once

#include "layer_fence.h"

#include <cstdint>
#include <functional>
#include <map>
#include <string>

#include "module.h"
#include "state.h"

namespace ladon::nn {

inline constexpr std::uint32_t kCheckpointVersion = 1;

// A checkpoint's contents. Sections other than the four named ones (another optimizer, a loss
// balancer's state, early stopping) go in `extra` under a name of the user's choosing.
struct Checkpoint {
  StateDict model;
  StateDict optimizer;
  StateDict scheduler;
  StateDict metadata;
  std::map<std::string, StateDict> extra;
};

// The file level: write (atomically, as above) and read-and-verify. Tensors must be defined.
void write_checkpoint(const std::string& path, const Checkpoint& checkpoint);
Checkpoint read_checkpoint(const std::string& path);

struct SaveOptions {
  const Stateful* optimizer = nullptr;
  const Stateful* scheduler = nullptr;
  const Stateful* early_stopping = nullptr;  // saved in extra["early_stopping"]
  StateDict metadata = {};
};
void save_checkpoint(const std::string& path, Module& model, const SaveOptions& options = {});

struct LoadOptions {
  Stateful* optimizer = nullptr;  // each one given must have its state in the file
  Stateful* scheduler = nullptr;
  Stateful* early_stopping = nullptr;
  bool strict = true;  // missing or unexpected model keys are errors; otherwise reported
};
struct LoadedCheckpoint {
  StateDict metadata;
  LoadReport report;      // missing and unexpected model keys (empty when strict)
  Checkpoint checkpoint;  // everything read, including sections not loaded into anything
};
LoadedCheckpoint load_checkpoint(const std::string& path, Module& model, const LoadOptions& options = {});
// load_checkpoint's second half, for a checkpoint already read (dist/ cuts it down to one rank's
// shard first): checks every part given in `options`, and only then applies them all, so an error
// (prefixed with "load_checkpoint '<source>': ") changes nothing. Returns the model's missing and
// unexpected keys.
LoadReport apply_checkpoint(const Checkpoint& checkpoint, const std::string& source, Module& model,
                            const LoadOptions& options);

namespace detail {
// Testing only: called after each chunk written to the temporary file with the bytes written so
// far (lets a test kill a writer mid-save). Pass an empty function to remove.
void set_checkpoint_write_hook(std::function<void(std::uint64_t bytes_written)> hook);
}  // namespace detail

}  // namespace ladon::nn
