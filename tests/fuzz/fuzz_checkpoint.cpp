// libFuzzer target: the checkpoint reader and loader. The input is a checkpoint payload; the
// harness wraps it in a valid header and checksum, so the fuzzer explores what lies behind them.
// Every input must read or throw ladon::Error, and a load that throws must leave the model and the
// optimizer exactly as they were.
#include <zlib.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "fuzz_util.h"
#include "core/random.h"
#include "nn/checkpoint.h"
#include "nn/linear.h"
#include "nn/optim.h"

namespace {
struct Target {
  ladon::Generator gen{7};
  ladon::nn::Linear model{3, 2, {}, gen};
  ladon::nn::Adam opt{model.parameters(), {.lr = 0.01}};
};
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static Target t;
  std::vector<std::uint8_t> file(24 + size + 4);
  std::memcpy(file.data(), "LADONCKP", 8);
  const std::uint32_t version = ladon::nn::kCheckpointVersion, reserved = 0;
  const std::uint64_t payload = size;
  std::memcpy(file.data() + 8, &version, 4);
  std::memcpy(file.data() + 12, &reserved, 4);
  std::memcpy(file.data() + 16, &payload, 8);
  if (size > 0) std::memcpy(file.data() + 24, data, size);
  const auto crc = static_cast<std::uint32_t>(crc32(0, file.data(), static_cast<uInt>(24 + size)));
  std::memcpy(file.data() + 24 + size, &crc, 4);
  const std::string path = ladon::fuzz::write_input(file.data(), file.size());

  bool with_optimizer = false;
  try {
    with_optimizer = !ladon::nn::read_checkpoint(path).optimizer.empty();
  } catch (const ladon::Error&) {
    return 0;  // the loader below would fail the same way
  }
  const ladon::nn::StateDict model_before = ladon::nn::module_state(t.model);
  const ladon::nn::StateDict opt_before = t.opt.state_dict();
  try {
    ladon::nn::load_checkpoint(path, t.model, {.optimizer = with_optimizer ? &t.opt : nullptr});
  } catch (const ladon::Error&) {
    if (!(ladon::nn::module_state(t.model) == model_before) || !(t.opt.state_dict() == opt_before)) std::abort();
  }
  return 0;
}
