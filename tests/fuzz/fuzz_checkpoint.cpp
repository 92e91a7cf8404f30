// libFuzzer target: the checkpoint reader and loader. The input is two checkpoint payloads:
//   u16 n (little-endian), n bytes of payload A, the rest payload B.
// The harness wraps each in a valid header and checksum, so the fuzzer explores what lies behind
// them. Every input must read or throw ladon::Error. A fresh model, Adam (one step taken, so it has
// moments), StepLR and EarlyStopping load A first (success or not: it only sets the scene, e.g. a
// NaN weight), then B; a load of B that throws must leave all four bit for bit as they were.
// Each part the file has a section for is loaded. A fresh scene per input keeps every finding
// reproducible from its one file.
#include <zlib.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "fuzz_util.h"
#include "core/autograd.h"
#include "core/random.h"
#include "nn/checkpoint.h"
#include "nn/early_stopping.h"
#include "nn/linear.h"
#include "nn/optim.h"
#include "nn/scheduler.h"

namespace {

using namespace ladon;

struct Scene {
  Generator gen{7};
  nn::Linear model{3, 2, {}, gen};
  nn::Adam opt{model.parameters(), {.lr = 0.01}};
  nn::StepLR sched{opt, {.step_size = 2, .gamma = 0.5}};
  nn::EarlyStopping stopper{model, {.patience = 3}};
  Scene() {
    for (const Tensor& p : model.parameters()) p.set_grad(full(p.shape(), 0.5));
    opt.step();
    stopper.step(1.0);
  }
  struct Snapshot {
    nn::StateDict model, opt, sched, stopper;
  };
  Snapshot snapshot() {
    return {nn::module_state(model), opt.state_dict(), sched.state_dict(), stopper.state_dict()};
  }
  bool same(const Snapshot& s) {
    const Snapshot now = snapshot();
    return now.model == s.model && now.opt == s.opt && now.sched == s.sched && now.stopper == s.stopper;
  }
  // Loads `payload` (wrapped into a valid file) into every part it has a section for; false when
  // the file itself does not read.
  bool load(const std::uint8_t* data, std::size_t size) {
    std::vector<std::uint8_t> file(24 + size + 4);
    std::memcpy(file.data(), "LADONCKP", 8);
    const std::uint32_t version = nn::kCheckpointVersion, reserved = 0;
    const std::uint64_t payload = size;
    std::memcpy(file.data() + 8, &version, 4);
    std::memcpy(file.data() + 12, &reserved, 4);
    std::memcpy(file.data() + 16, &payload, 8);
    if (size > 0) std::memcpy(file.data() + 24, data, size);
    const auto crc = static_cast<std::uint32_t>(crc32(0, file.data(), static_cast<uInt>(24 + size)));
    std::memcpy(file.data() + 24 + size, &crc, 4);
    const std::string path = fuzz::write_input(file.data(), file.size());
    nn::LoadOptions options;
    try {
      const nn::Checkpoint c = nn::read_checkpoint(path);
      if (!c.optimizer.empty()) options.optimizer = &opt;
      if (!c.scheduler.empty()) options.scheduler = &sched;
      if (c.extra.count("early_stopping")) options.early_stopping = &stopper;
    } catch (const Error&) {
      return false;  // the loader would fail the same way, before reaching any part
    }
    nn::load_checkpoint(path, model, options);
    return true;
  }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 2) return 0;
  const std::size_t first = std::min<std::size_t>(data[0] | (std::size_t{data[1]} << 8), size - 2);
  Scene scene;
  try {
    scene.load(data + 2, first);
  } catch (const Error&) {
  }
  const Scene::Snapshot before = scene.snapshot();
  try {
    scene.load(data + 2 + first, size - 2 - first);
  } catch (const Error&) {
    if (!scene.same(before)) std::abort();
  }
  return 0;
}
