// libFuzzer target: read_idx on the gzip compression of arbitrary bytes, so the fuzzer explores the
// IDX header and sizes behind a valid gzip stream. The first input byte picks a damage: none, a
// flipped trailer byte, a cut tail, or junk after the stream.
#include <zlib.h>

#include <cstdint>
#include <cstdlib>
#include <vector>

#include "data/idx.h"
#include "fuzz_util.h"

namespace {
std::vector<std::uint8_t> gzip(const std::uint8_t* data, std::size_t size) {
  z_stream z{};
  if (deflateInit2(&z, 1, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK) std::abort();
  std::vector<std::uint8_t> out(deflateBound(&z, static_cast<uLong>(size)) + 64);
  z.next_in = const_cast<Bytef*>(data);
  z.avail_in = static_cast<uInt>(size);
  z.next_out = out.data();
  z.avail_out = static_cast<uInt>(out.size());
  if (deflate(&z, Z_FINISH) != Z_STREAM_END) std::abort();
  out.resize(z.total_out);
  deflateEnd(&z);
  return out;
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const int damage = data[0] % 4;
  std::vector<std::uint8_t> gz = gzip(data + 1, size - 1);
  if (damage == 1) gz[gz.size() - 1 - data[0] / 4 % 8] ^= 0x5a;
  if (damage == 2) gz.resize(gz.size() - 1 - data[0] / 4 % 8);
  if (damage == 3) gz.insert(gz.end(), {0x00, 0x1f, 0x41});
  const std::string path = ladon::fuzz::write_input(gz.data(), gz.size());
  try {
    const ladon::data::IdxArray a = ladon::data::read_idx(path);
    if (damage != 0) std::abort();  // every damage must be detected
    if (static_cast<std::int64_t>(a.bytes.size()) != ladon::shape_numel(a.shape)) std::abort();
  } catch (const ladon::Error&) {
  }
  return 0;
}
