#include "checkpoint.h"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <bit>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <vector>

#include "../core/autograd.h"

namespace ladon::nn {

static_assert(std::endian::native == std::endian::little, "checkpoint I/O assumes a little-endian host");

namespace {

constexpr char kMagic[8] = {'L', 'A', 'D', 'O', 'N', 'C', 'K', 'P'};
constexpr std::size_t kHeaderBytes = 24;  // magic, version, reserved, payload size
constexpr std::size_t kChunk = std::size_t{1} << 20;

std::function<void(std::uint64_t)>& write_hook() {
  static std::function<void(std::uint64_t)> hook;
  return hook;
}

// ---- CRC-32 (IEEE, as zlib's crc32), slicing by 4 ----------------------------------------------

struct Crc32Tables {
  std::array<std::array<std::uint32_t, 256>, 4> t{};
  Crc32Tables() {
    for (std::uint32_t i = 0; i < 256; ++i) {
      std::uint32_t c = i;
      for (int k = 0; k < 8; ++k) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
      t[0][i] = c;
    }
    for (std::uint32_t i = 0; i < 256; ++i)
      for (int s = 1; s < 4; ++s) t[s][i] = (t[s - 1][i] >> 8) ^ t[0][t[s - 1][i] & 0xff];
  }
};

std::uint32_t crc32_update(std::uint32_t crc, const void* data, std::size_t n) {
  static const Crc32Tables tables;
  const auto& t = tables.t;
  const auto* p = static_cast<const unsigned char*>(data);
  crc = ~crc;
  while (n >= 4) {
    std::uint32_t w;
    std::memcpy(&w, p, 4);
    crc ^= w;
    crc = t[3][crc & 0xff] ^ t[2][(crc >> 8) & 0xff] ^ t[1][(crc >> 16) & 0xff] ^ t[0][crc >> 24];
    p += 4;
    n -= 4;
  }
  while (n--) crc = t[0][(crc ^ *p++) & 0xff] ^ (crc >> 8);
  return ~crc;
}

// ---- Writing ------------------------------------------------------------------------------------

// Counts bytes (sizing pass) or buffers them into a file descriptor with a running CRC.
class Sink {
 public:
  explicit Sink(int fd = -1, std::string path = {}) : fd_(fd), path_(std::move(path)) {
    if (fd_ >= 0) buffer_.reserve(kChunk);
  }
  void put(const void* data, std::size_t n) {
    total_ += n;
    if (fd_ < 0) return;
    const char* p = static_cast<const char*>(data);
    while (n > 0) {
      const std::size_t take = std::min(n, kChunk - buffer_.size());
      buffer_.insert(buffer_.end(), p, p + take);
      p += take;
      n -= take;
      if (buffer_.size() == kChunk) flush();
    }
  }
  template <typename T>
  void put_value(T v) {
    put(&v, sizeof v);
  }
  void put_string(const std::string& s) {
    put_value(static_cast<std::uint32_t>(s.size()));
    put(s.data(), s.size());
  }
  void flush() {
    if (buffer_.empty()) return;
    crc_ = crc32_update(crc_, buffer_.data(), buffer_.size());
    const char* p = buffer_.data();
    std::size_t left = buffer_.size();
    while (left > 0) {
      const ssize_t w = ::write(fd_, p, left);
      if (w < 0 && errno == EINTR) continue;
      if (w < 0) ::ladon::detail::fail("save_checkpoint", "cannot write '", path_, "': ", std::strerror(errno));
      p += w;
      left -= static_cast<std::size_t>(w);
    }
    written_ += buffer_.size();
    buffer_.clear();
    if (write_hook()) write_hook()(written_);
  }
  std::uint64_t total() const { return total_; }
  std::uint32_t crc() const { return crc_; }

 private:
  int fd_;
  std::string path_;
  std::vector<char> buffer_;
  std::uint64_t total_ = 0, written_ = 0;
  std::uint32_t crc_ = 0;
};

void check_writable(const Checkpoint& c) {
  auto check = [](const std::string& section, const StateDict& d) {
    for (const auto& [key, value] : d.items())
      if (const auto* t = std::get_if<Tensor>(&value))
        LADON_CHECK(t->defined(), "save_checkpoint", "section '", section, "', entry '", key,
                    "' is an undefined tensor");
  };
  check("model", c.model);
  check("optimizer", c.optimizer);
  check("scheduler", c.scheduler);
  check("metadata", c.metadata);
  for (const auto& [name, d] : c.extra) {
    LADON_CHECK(name != "model" && name != "optimizer" && name != "scheduler" && name != "metadata", "save_checkpoint",
                "extra section '", name, "' has the name of a built-in section");
    check(name, d);
  }
}

void put_dict(Sink& s, const std::string& name, const StateDict& d) {
  s.put_string(name);
  s.put_value(static_cast<std::uint64_t>(d.size()));
  for (const auto& [key, value] : d.items()) {
    s.put_string(key);
    s.put_value(static_cast<std::uint8_t>(value.index()));
    if (const auto* t = std::get_if<Tensor>(&value)) {
      const Tensor c = t->contiguous();
      s.put_value(static_cast<std::uint8_t>(c.dtype() == Dtype::float32 ? 0 : 1));
      s.put_value(static_cast<std::uint32_t>(c.dim()));
      for (std::int64_t d : c.shape()) s.put_value(d);
      const std::size_t bytes = static_cast<std::size_t>(c.numel()) * dtype_size(c.dtype());
      if (bytes > 0) {
        const void* data = c.dtype() == Dtype::float32 ? static_cast<const void*>(c.data<float>())
                                                       : static_cast<const void*>(c.data<std::int64_t>());
        s.put(data, bytes);
      }
    } else if (const auto* x = std::get_if<double>(&value)) {
      s.put_value(*x);
    } else if (const auto* i = std::get_if<std::int64_t>(&value)) {
      s.put_value(*i);
    } else {
      s.put_string(std::get<std::string>(value));
    }
  }
}

void put_payload(Sink& s, const Checkpoint& c) {
  s.put_value(static_cast<std::uint32_t>(4 + c.extra.size()));
  put_dict(s, "model", c.model);
  put_dict(s, "optimizer", c.optimizer);
  put_dict(s, "scheduler", c.scheduler);
  put_dict(s, "metadata", c.metadata);
  for (const auto& [name, d] : c.extra) put_dict(s, name, d);
}

std::string directory_of(const std::string& path) {
  const std::size_t slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  return slash == 0 ? "/" : path.substr(0, slash);
}

// Removes `path.tmp.<pid>` files that a killed writer left behind (without this, 300 kills left
// 226 files, 354 MB). A file is removed only when both say nobody is writing it: its pid names no
// live process on this machine, and its writer's lock (writers hold flock on their temporary) can
// be taken. Best effort: a file that cannot be examined is left alone.
void remove_stale_temporaries(const std::string& path) {
  const std::size_t slash = path.rfind('/');
  const std::string dir = directory_of(path);
  const std::string prefix = (slash == std::string::npos ? path : path.substr(slash + 1)) + ".tmp.";
  DIR* d = ::opendir(dir.c_str());
  if (d == nullptr) return;
  std::vector<std::string> stale;
  while (const dirent* e = ::readdir(d)) {
    const std::string name = e->d_name;
    if (name.size() <= prefix.size() || name.compare(0, prefix.size(), prefix) != 0) continue;
    const std::string digits = name.substr(prefix.size());
    if (digits.size() > 9 || digits.find_first_not_of("0123456789") != std::string::npos) continue;
    const auto pid = static_cast<pid_t>(std::stol(digits));
    if (pid <= 0 || pid == ::getpid()) continue;
    if (::kill(pid, 0) == 0 || errno != ESRCH) continue;  // alive, or not ours to judge
    stale.push_back(dir + "/" + name);
  }
  ::closedir(d);
  for (const std::string& file : stale) {
    const int fd = ::open(file.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) continue;
    if (::flock(fd, LOCK_EX | LOCK_NB) == 0) ::unlink(file.c_str());
    ::close(fd);
  }
}

// ---- Reading ------------------------------------------------------------------------------------

class Reader {
 public:
  Reader(const std::vector<char>& bytes, std::size_t begin, std::size_t end, const std::string& path)
      : bytes_(bytes), pos_(begin), end_(end), path_(path) {}
  const char* take(std::size_t n, const char* what) {
    LADON_CHECK(n <= end_ - pos_, "read_checkpoint", "'", path_, "' is corrupt: ", what, " at byte ", pos_, " needs ",
                n, " bytes, only ", end_ - pos_, " remain");
    const char* p = bytes_.data() + pos_;
    pos_ += n;
    return p;
  }
  template <typename T>
  T value(const char* what) {
    T v;
    std::memcpy(&v, take(sizeof v, what), sizeof v);
    return v;
  }
  std::string string(const char* what) {
    const auto n = value<std::uint32_t>(what);
    const char* p = take(n, what);
    return std::string(p, n);
  }
  std::size_t pos() const { return pos_; }
  std::size_t remaining() const { return end_ - pos_; }
  bool done() const { return pos_ == end_; }

 private:
  const std::vector<char>& bytes_;
  std::size_t pos_, end_;
  const std::string& path_;
};

StateDict read_dict(Reader& r, const std::string& path, const std::string& section) {
  const char* op = "read_checkpoint";
  StateDict d;
  const auto entries = r.value<std::uint64_t>("entry count");
  for (std::uint64_t e = 0; e < entries; ++e) {
    std::string key = r.string("key");
    LADON_CHECK(!d.contains(key), op, "'", path, "' is corrupt: section '", section, "' has key '", key, "' twice");
    const auto kind = r.value<std::uint8_t>("value kind");
    switch (kind) {
      case 0: {
        const auto dtype_code = r.value<std::uint8_t>("dtype");
        LADON_CHECK(dtype_code <= 1, op, "'", path, "' is corrupt: tensor '", key, "' has unknown dtype code ",
                    int{dtype_code});
        const Dtype dtype = dtype_code == 0 ? Dtype::float32 : Dtype::int64;
        const auto rank = r.value<std::uint32_t>("rank");
        LADON_CHECK(rank <= 64, op, "'", path, "' is corrupt: tensor '", key, "' has rank ", rank);
        Shape shape(rank);
        // span multiplies max(dim, 1), so the strides of a tensor with a zero dim stay in range too.
        std::uint64_t span = 1;
        bool any_zero = false;
        const std::uint64_t limit = std::uint64_t{1} << 59;
        for (auto& dim : shape) {
          dim = r.value<std::int64_t>("dimension");
          LADON_CHECK(dim >= 0, op, "'", path, "' is corrupt: tensor '", key, "' has a negative dimension ", dim);
          const auto factor = std::max<std::uint64_t>(static_cast<std::uint64_t>(dim), 1);
          LADON_CHECK(span <= limit / factor, op, "'", path, "' is corrupt: tensor '", key, "' of shape [.., ", dim,
                      ", ..] is impossibly large");
          span *= factor;
          any_zero = any_zero || dim == 0;
        }
        const std::uint64_t bytes = (any_zero ? 0 : span) * dtype_size(dtype);
        LADON_CHECK(bytes <= r.remaining(), op, "'", path, "' is corrupt: tensor '", key, "' of shape ", shape_str(shape),
                    " needs ", bytes, " bytes of data, only ", r.remaining(), " remain");
        const char* data = r.take(static_cast<std::size_t>(bytes), "tensor data");
        Tensor t = empty(shape, dtype);
        if (bytes > 0) {
          void* dst = dtype == Dtype::float32 ? static_cast<void*>(t.data<float>())
                                              : static_cast<void*>(t.data<std::int64_t>());
          std::memcpy(dst, data, static_cast<std::size_t>(bytes));
        }
        d.set(key, t);
        break;
      }
      case 1:
        d.set(key, r.value<double>("number"));
        break;
      case 2:
        d.set(key, r.value<std::int64_t>("integer"));
        break;
      case 3:
        d.set(key, StateValue(r.string("string")));
        break;
      default:
        ::ladon::detail::fail(op, "'", path, "' is corrupt: entry '", key, "' has unknown kind ", int{kind});
    }
  }
  return d;
}

std::vector<char> read_file(const std::string& path) {
  const char* op = "read_checkpoint";
  std::FILE* f = std::fopen(path.c_str(), "rb");
  LADON_CHECK(f != nullptr, op, "cannot open '", path, "': ", std::strerror(errno));
  std::vector<char> bytes;
  std::array<char, 1 << 16> chunk;
  while (true) {
    const std::size_t got = std::fread(chunk.data(), 1, chunk.size(), f);
    bytes.insert(bytes.end(), chunk.data(), chunk.data() + got);
    if (got < chunk.size()) break;
  }
  const bool failed = std::ferror(f) != 0;
  const int err = errno;
  std::fclose(f);
  LADON_CHECK(!failed, op, "cannot read '", path, "': ", std::strerror(err));
  return bytes;
}

}  // namespace

namespace detail {
void set_checkpoint_write_hook(std::function<void(std::uint64_t)> hook) { write_hook() = std::move(hook); }
}  // namespace detail

// ---- write / read -------------------------------------------------------------------------------

void write_checkpoint(const std::string& path, const Checkpoint& checkpoint) {
  const char* op = "save_checkpoint";
  check_writable(checkpoint);
  NoGradGuard no_grad;
  Sink sizing;
  put_payload(sizing, checkpoint);
  const std::uint64_t payload = sizing.total();

  remove_stale_temporaries(path);
  const std::string tmp = path + ".tmp." + std::to_string(::getpid());
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  LADON_CHECK(fd >= 0, op, "cannot create '", tmp, "': ", std::strerror(errno));
  // Held until close: tells remove_stale_temporaries in other processes that this file is live.
  ::flock(fd, LOCK_EX);
  try {
    Sink s(fd, tmp);
    s.put(kMagic, sizeof kMagic);
    s.put_value(kCheckpointVersion);
    s.put_value(std::uint32_t{0});
    s.put_value(payload);
    put_payload(s, checkpoint);
    s.flush();
    LADON_CHECK(s.total() == kHeaderBytes + payload, op, "internal error: wrote ", s.total() - kHeaderBytes,
                " payload bytes, sized ", payload);
    const std::uint32_t crc = s.crc();
    Sink tail(fd, tmp);
    tail.put_value(crc);
    tail.flush();
    LADON_CHECK(::fsync(fd) == 0, op, "cannot sync '", tmp, "': ", std::strerror(errno));
  } catch (...) {
    ::close(fd);
    ::unlink(tmp.c_str());
    throw;
  }
  if (::close(fd) != 0) {
    const int err = errno;
    ::unlink(tmp.c_str());
    ::ladon::detail::fail(op, "cannot close '", tmp, "': ", std::strerror(err));
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    const int err = errno;
    ::unlink(tmp.c_str());
    ::ladon::detail::fail(op, "cannot rename '", tmp, "' to '", path, "': ", std::strerror(err));
  }
  // Make the rename itself durable. Best effort: some file systems refuse fsync on a directory.
  const int dir = ::open(directory_of(path).c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir >= 0) {
    ::fsync(dir);
    ::close(dir);
  }
}

Checkpoint read_checkpoint(const std::string& path) {
  const char* op = "read_checkpoint";
  const std::vector<char> bytes = read_file(path);
  const std::size_t n = bytes.size();
  // An empty file has no data pointer to compare; it is simply truncated.
  LADON_CHECK(n >= sizeof kMagic || (n > 0 && std::memcmp(bytes.data(), kMagic, n) != 0), op, "'", path,
              "' is truncated: ", n, " bytes, shorter than the header");
  LADON_CHECK(n >= sizeof kMagic && std::memcmp(bytes.data(), kMagic, sizeof kMagic) == 0, op, "'", path,
              "' is not a ladon checkpoint (its first bytes are not \"LADONCKP\")");
  LADON_CHECK(n >= kHeaderBytes, op, "'", path, "' is truncated: ", n, " bytes, shorter than the ", kHeaderBytes,
              "-byte header");
  std::uint32_t version;
  std::memcpy(&version, bytes.data() + 8, 4);
  LADON_CHECK(version == kCheckpointVersion, op, "'", path, "' has format version ", version,
              "; this build reads version ", kCheckpointVersion);
  std::uint64_t payload;
  std::memcpy(&payload, bytes.data() + 16, 8);
  const std::uint64_t expected = payload > (std::uint64_t{1} << 62) ? ~std::uint64_t{0} : kHeaderBytes + payload + 4;
  LADON_CHECK(n >= expected, op, "'", path, "' is truncated: ", n, " bytes, the header promises ", expected);
  LADON_CHECK(n == expected, op, "'", path, "' is corrupt: ", n, " bytes, the header promises ", expected);
  std::uint32_t stored;
  std::memcpy(&stored, bytes.data() + n - 4, 4);
  const std::uint32_t computed = crc32_update(0, bytes.data(), n - 4);
  if (stored != computed) {
    char msg[64];
    std::snprintf(msg, sizeof msg, "stored %08x, computed %08x", stored, computed);
    ::ladon::detail::fail(op, "'", path, "' is corrupt: checksum mismatch (", msg, ")");
  }

  Reader r(bytes, kHeaderBytes, n - 4, path);
  Checkpoint c;
  std::map<std::string, bool> seen;
  const auto sections = r.value<std::uint32_t>("section count");
  for (std::uint32_t k = 0; k < sections; ++k) {
    const std::string name = r.string("section name");
    LADON_CHECK(seen.emplace(name, true).second, op, "'", path, "' is corrupt: section '", name, "' appears twice");
    StateDict d = read_dict(r, path, name);
    if (name == "model")
      c.model = std::move(d);
    else if (name == "optimizer")
      c.optimizer = std::move(d);
    else if (name == "scheduler")
      c.scheduler = std::move(d);
    else if (name == "metadata")
      c.metadata = std::move(d);
    else
      c.extra.emplace(name, std::move(d));
  }
  LADON_CHECK(r.done(), op, "'", path, "' is corrupt: ", n - 4 - r.pos(), " unread bytes after the last section");
  return c;
}

// ---- save / load --------------------------------------------------------------------------------

void save_checkpoint(const std::string& path, Module& model, const SaveOptions& options) {
  Checkpoint c;
  c.model = module_state(model, /*copy=*/false);
  if (options.optimizer) c.optimizer = options.optimizer->state_dict();
  if (options.scheduler) c.scheduler = options.scheduler->state_dict();
  if (options.early_stopping) c.extra["early_stopping"] = options.early_stopping->state_dict();
  c.metadata = options.metadata;
  write_checkpoint(path, c);
}

LoadReport apply_checkpoint(const Checkpoint& c, const std::string& source, Module& model, const LoadOptions& options) {
  const StateDict* early = nullptr;
  if (const auto it = c.extra.find("early_stopping"); it != c.extra.end()) early = &it->second;
  // Validate every part first, so a failure leaves everything as it was.
  LoadReport report;
  try {
    report = check_module_state(model, c.model, options.strict);
    if (options.optimizer) {
      if (c.optimizer.empty()) throw Error("the file has no optimizer state");
      options.optimizer->check_state_dict(c.optimizer);
    }
    if (options.scheduler) {
      if (c.scheduler.empty()) throw Error("the file has no scheduler state");
      options.scheduler->check_state_dict(c.scheduler);
    }
    if (options.early_stopping) {
      if (early == nullptr) throw Error("the file has no early-stopping state");
      options.early_stopping->check_state_dict(*early);
    }
  } catch (const Error& e) {
    throw Error("load_checkpoint '" + source + "': " + e.what());
  }
  load_module_state(model, c.model, options.strict);
  if (options.optimizer) options.optimizer->load_state_dict(c.optimizer);
  if (options.scheduler) options.scheduler->load_state_dict(c.scheduler);
  if (options.early_stopping) options.early_stopping->load_state_dict(*early);
  return report;
}

LoadedCheckpoint load_checkpoint(const std::string& path, Module& model, const LoadOptions& options) {
  LoadedCheckpoint out;
  out.checkpoint = read_checkpoint(path);
  out.report = apply_checkpoint(out.checkpoint, path, model, options);
  out.metadata = out.checkpoint.metadata;
  return out;
}

}  // namespace ladon::nn
