#include "idx.h"

#include <zlib.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <limits>

namespace ladon::data {
namespace {

constexpr const char* kOp = "read_idx";

const char* idx_type_name(std::uint8_t type) {
  switch (type) {
    case 0x08: return "unsigned byte";
    case 0x09: return "signed byte";
    case 0x0B: return "int16";
    case 0x0C: return "int32";
    case 0x0D: return "float32";
    case 0x0E: return "float64";
    default: return nullptr;
  }
}

std::string hex_byte(std::uint8_t b) {
  constexpr char kDigits[] = "0123456789ABCDEF";
  return std::string("0x") + kDigits[b >> 4] + kDigits[b & 15];
}

// RAII over zlib's gzFile, which reads gzip and plain files alike. Turns every zlib failure into
// a ladon::Error naming the path.
class GzReader {
 public:
  explicit GzReader(const std::string& path) : path_(path) {
    errno = 0;
    file_ = gzopen(path.c_str(), "rb");
    if (file_ == nullptr) {
      const int err = errno;
      detail::fail(kOp, "cannot open '", path, "': ", err != 0 ? std::strerror(err) : "out of memory");
    }
    gzbuffer(file_, 1 << 17);  // the default 8 KiB makes decompression syscall-bound
  }
  GzReader(const GzReader&) = delete;
  GzReader& operator=(const GzReader&) = delete;
  ~GzReader() { gzclose_r(file_); }

  // Reads up to n bytes; returns fewer only at the end of the data.
  std::size_t read(void* buffer, std::size_t n) {
    auto* out = static_cast<unsigned char*>(buffer);
    std::size_t total = 0;
    while (total < n) {
      // gzread takes an unsigned and returns an int, so read in chunks that fit both.
      const auto chunk = static_cast<unsigned>(std::min<std::size_t>(n - total, 1u << 30));
      const int got = gzread(file_, out + total, chunk);
      if (got < 0) fail_zlib();
      if (got == 0) {
        // A gzip stream cut short is only a "soft" error in zlib: gzread returns 0 and records
        // Z_BUF_ERROR instead of failing, so it has to be checked here.
        int errnum = Z_OK;
        gzerror(file_, &errnum);
        if (errnum != Z_OK) fail_zlib();
        break;
      }
      total += static_cast<std::size_t>(got);
    }
    return total;
  }

 private:
  [[noreturn]] void fail_zlib() {
    int errnum = Z_OK;
    std::string message = gzerror(file_, &errnum);
    // zlib prefixes its messages with the path, which the error names already.
    if (message.starts_with(path_ + ": ")) message.erase(0, path_.size() + 2);
    if (errnum == Z_ERRNO) detail::fail(kOp, "cannot read '", path_, "': ", message);
    detail::fail(kOp, "'", path_, "': corrupt or truncated gzip data (", message, ")");
  }

  std::string path_;
  gzFile file_ = nullptr;
};

}  // namespace

IdxArray read_idx(const std::string& path) {
  GzReader in(path);

  std::array<std::uint8_t, 4> magic{};
  const std::size_t got_magic = in.read(magic.data(), magic.size());
  LADON_CHECK(got_magic == magic.size(), kOp, "'", path, "': file too short for an IDX header (", got_magic,
              " of 4 bytes)");
  LADON_CHECK(magic[0] == 0 && magic[1] == 0, kOp, "'", path, "': not an IDX file: magic starts with ",
              hex_byte(magic[0]), " ", hex_byte(magic[1]), ", expected 0x00 0x00");
  const std::uint8_t type = magic[2];
  const char* type_name = idx_type_name(type);
  LADON_CHECK(type_name != nullptr, kOp, "'", path, "': unknown IDX element type ", hex_byte(type));
  LADON_CHECK(type == 0x08, kOp, "'", path, "': unsupported IDX element type ", hex_byte(type), " (", type_name,
              "); only 0x08 (unsigned byte) is supported");
  const int rank = magic[3];
  LADON_CHECK(rank >= 1 && rank <= 4, kOp, "'", path, "': IDX rank ", rank, " is outside 1..4");

  std::array<std::uint8_t, 16> size_bytes{};
  const auto size_len = static_cast<std::size_t>(4 * rank);
  const std::size_t got_sizes = in.read(size_bytes.data(), size_len);
  LADON_CHECK(got_sizes == size_len, kOp, "'", path, "': truncated IDX header: ", size_len,
              " bytes of sizes expected for rank ", rank, ", found ", got_sizes);

  IdxArray result;
  for (int d = 0; d < rank; ++d) {
    const std::uint8_t* p = size_bytes.data() + 4 * d;
    result.shape.push_back((std::int64_t{p[0]} << 24) | (std::int64_t{p[1]} << 16) | (std::int64_t{p[2]} << 8) |
                           std::int64_t{p[3]});
  }
  // Four uint32 sizes can overflow any integer type, so check each product against the int64
  // limit that Shape imposes. A zero size makes the array empty however large the others are.
  const bool has_zero = std::find(result.shape.begin(), result.shape.end(), 0) != result.shape.end();
  std::uint64_t expected = has_zero ? 0 : 1;
  for (const std::int64_t size : result.shape) {
    if (has_zero) break;  // no overflow possible
    const auto s = static_cast<std::uint64_t>(size);
    LADON_CHECK(expected <= static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()) / s, kOp, "'", path,
                "': IDX shape ", shape_str(result.shape), " declares more than 2^63 elements");
    expected *= s;
  }

  // Grow the buffer as bytes arrive rather than trusting the header with one big allocation: a
  // corrupt header may declare terabytes for a file of a few bytes.
  constexpr std::size_t kChunk = std::size_t{16} << 20;
  result.bytes.reserve(static_cast<std::size_t>(std::min<std::uint64_t>(expected, std::uint64_t{64} << 20)));
  while (result.bytes.size() < expected) {
    const std::size_t old = result.bytes.size();
    const auto want = static_cast<std::size_t>(std::min<std::uint64_t>(expected - old, kChunk));
    result.bytes.resize(old + want);
    const std::size_t got = in.read(result.bytes.data() + old, want);
    result.bytes.resize(old + got);
    if (got < want) break;
  }
  const std::uint64_t found = result.bytes.size();
  LADON_CHECK(found == expected, kOp, "'", path, "': truncated: header declares shape ", shape_str(result.shape), " = ",
              expected, " data bytes, found ", found);

  std::uint64_t extra = 0;
  std::array<std::uint8_t, 1 << 16> scratch{};
  for (std::size_t got; (got = in.read(scratch.data(), scratch.size())) > 0;) extra += got;
  LADON_CHECK(extra == 0, kOp, "'", path, "': trailing garbage: header declares shape ", shape_str(result.shape), " = ",
              expected, " data bytes, found ", expected + extra);
  return result;
}

}  // namespace ladon::data
