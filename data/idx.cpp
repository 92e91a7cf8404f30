#include "idx.h"

#include <zlib.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdio>
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

// A file read either as it is or, when it starts with the gzip magic, through zlib's inflate.
// inflate is driven here rather than through gzread because gzread silently ignores whatever
// follows a complete gzip stream; here another gzip member may follow, anything else is an error.
// Every failure is a ladon::Error naming the path.
class Input {
 public:
  explicit Input(const std::string& path) : path_(path) {
    file_ = std::fopen(path.c_str(), "rb");
    if (file_ == nullptr) detail::fail(kOp, "cannot open '", path, "': ", std::strerror(errno));
    try {
      refill();
    } catch (...) {
      std::fclose(file_);
      throw;
    }
    gzip_ = have_ >= 2 && raw_[0] == 0x1f && raw_[1] == 0x8b;
    if (gzip_ && inflateInit2(&z_, 15 + 16) != Z_OK) {  // 15 + 16: a 32 KiB window, gzip wrapper
      std::fclose(file_);
      detail::fail(kOp, "'", path, "': cannot start gzip decompression (out of memory)");
    }
  }
  Input(const Input&) = delete;
  Input& operator=(const Input&) = delete;
  ~Input() {
    if (gzip_) inflateEnd(&z_);
    std::fclose(file_);
  }

  // Reads up to n bytes; returns fewer only at the end of the data.
  std::size_t read(void* buffer, std::size_t n) {
    auto* out = static_cast<unsigned char*>(buffer);
    std::size_t total = 0;
    while (total < n) {
      if (have_ == 0) refill();
      if (!gzip_) {
        if (have_ == 0) break;
        const std::size_t take = std::min(n - total, have_);
        std::memcpy(out + total, raw_.data() + used_, take);
        used_ += take;
        have_ -= take;
        total += take;
        continue;
      }
      if (stream_done_) break;
      z_.next_in = raw_.data() + used_;
      z_.avail_in = static_cast<uInt>(have_);
      z_.next_out = out + total;
      z_.avail_out = static_cast<uInt>(std::min<std::size_t>(n - total, 1u << 30));
      const uInt before = z_.avail_out;
      const int rc = inflate(&z_, Z_NO_FLUSH);
      total += before - z_.avail_out;
      used_ += have_ - z_.avail_in;
      have_ = z_.avail_in;
      if (rc == Z_STREAM_END) {
        next_member();
      } else if (rc == Z_BUF_ERROR && have_ == 0) {
        if (at_end_) corrupt("unexpected end of file");
      } else if (rc != Z_OK) {
        corrupt(z_.msg != nullptr ? z_.msg : "inflate failed");
      }
    }
    return total;
  }

 private:
  // Moves the unread bytes to the front and tops the buffer up from the file.
  void refill() {
    if (at_end_) return;
    std::memmove(raw_.data(), raw_.data() + used_, have_);
    used_ = 0;
    const std::size_t got = std::fread(raw_.data() + have_, 1, raw_.size() - have_, file_);
    have_ += got;
    if (got == 0 || std::feof(file_)) {
      if (std::ferror(file_)) detail::fail(kOp, "cannot read '", path_, "': ", std::strerror(errno));
      at_end_ = std::feof(file_) != 0;
    }
  }
  // After a complete gzip member: the end of the file, another member, or junk.
  void next_member() {
    if (have_ < 2) refill();
    if (have_ == 0) {
      stream_done_ = true;
      return;
    }
    if (have_ < 2 || raw_[used_] != 0x1f || raw_[used_ + 1] != 0x8b)
      detail::fail(kOp, "'", path_, "': trailing data after the gzip stream (", have_, at_end_ ? "" : "+",
                   " bytes that are not another gzip member)");
    inflateReset(&z_);
  }
  [[noreturn]] void corrupt(const char* why) {
    detail::fail(kOp, "'", path_, "': corrupt or truncated gzip data (", why, ")");
  }

  std::string path_;
  std::FILE* file_ = nullptr;
  std::array<unsigned char, 1 << 17> raw_{};
  std::size_t used_ = 0, have_ = 0;  // raw_[used_, used_ + have_) is read but not yet consumed
  bool at_end_ = false, gzip_ = false, stream_done_ = false;
  z_stream z_{};
};

}  // namespace

IdxArray read_idx(const std::string& path) {
  Input in(path);

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

  // Grow the buffer as bytes arrive rather than trusting the header: a corrupt header may declare
  // terabytes for a file of a few bytes. Chunks start at 64 KiB and double while data keeps
  // coming, so a bad 32-byte file costs one small buffer, not tens of MiB of zero-fill.
  std::size_t chunk = std::size_t{64} << 10;
  while (result.bytes.size() < expected) {
    const std::size_t old = result.bytes.size();
    const auto want = static_cast<std::size_t>(std::min<std::uint64_t>(expected - old, chunk));
    result.bytes.resize(old + want);
    const std::size_t got = in.read(result.bytes.data() + old, want);
    result.bytes.resize(old + got);
    if (got < want) break;
    chunk = std::min(chunk * 2, std::size_t{16} << 20);
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
