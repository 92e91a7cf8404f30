// libFuzzer target: read_idx on arbitrary bytes (plain, or gzip when they start with its magic).
// Every input must either read or throw ladon::Error; a read array must hold exactly what its shape
// declares.
#include <cstdint>
#include <cstdlib>

#include "data/idx.h"
#include "fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string path = ladon::fuzz::write_input(data, size);
  try {
    const ladon::data::IdxArray a = ladon::data::read_idx(path);
    if (static_cast<std::int64_t>(a.bytes.size()) != ladon::shape_numel(a.shape)) std::abort();
  } catch (const ladon::Error&) {
  }
  return 0;
}
