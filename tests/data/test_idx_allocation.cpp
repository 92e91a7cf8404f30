// read_idx must not allocate from the header's word before the data arrives (issue 11): a 32-byte
// file whose header claims 60000 x 28 x 28 (47 MB) fails with a clear Error after allocating little.
// A program of its own (ladon_alloc_tests), because it replaces the global operator new to count
// what is asked of it; the main suite keeps the ordinary one.
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include <doctest/doctest.h>
#include <unistd.h>
#include <zlib.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <new>
#include <string>
#include <vector>

#include "ladon.h"

namespace {

// While armed, every operator new adds its size to `total` and raises `largest`.
std::atomic<bool> armed{false};
std::atomic<std::size_t> total{0}, largest{0};

struct Counting {
  Counting() {
    total = 0;
    largest = 0;
    armed = true;
  }
  ~Counting() { armed = false; }
};

void write_file(const std::string& path, const std::vector<unsigned char>& bytes, bool gzip) {
  if (gzip) {
    gzFile f = gzopen(path.c_str(), "wb");
    REQUIRE(f != nullptr);
    REQUIRE(gzwrite(f, bytes.data(), static_cast<unsigned>(bytes.size())) == static_cast<int>(bytes.size()));
    gzclose(f);
    return;
  }
  std::FILE* f = std::fopen(path.c_str(), "wb");
  REQUIRE(f != nullptr);
  REQUIRE(std::fwrite(bytes.data(), 1, bytes.size(), f) == bytes.size());
  std::fclose(f);
}

// An IDX header for unsigned bytes of `shape`, followed by `data`.
std::vector<unsigned char> idx(const std::vector<std::uint32_t>& shape, std::size_t data) {
  std::vector<unsigned char> out = {0, 0, 8, static_cast<unsigned char>(shape.size())};
  for (std::uint32_t s : shape)
    for (int k = 3; k >= 0; --k) out.push_back(static_cast<unsigned char>(s >> (8 * k)));
  for (std::size_t i = 0; i < data; ++i) out.push_back(static_cast<unsigned char>(i * 7));
  return out;
}

}  // namespace

void* operator new(std::size_t size) {
  if (armed.load(std::memory_order_relaxed)) {
    total += size;
    std::size_t seen = largest.load();
    while (size > seen && !largest.compare_exchange_weak(seen, size)) {
    }
  }
  if (void* p = std::malloc(size == 0 ? 1 : size)) return p;
  throw std::bad_alloc();
}
// GCC sees the free() of a pointer it knows came from new; here both are ours, so they match.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
void operator delete(void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
#pragma GCC diagnostic pop

TEST_CASE("read_idx: a 32-byte file claiming 60000 x 28 x 28 fails after allocating little, plain and gzip") {
  char dir_name[] = "/tmp/ladon_idx_alloc_XXXXXX";
  REQUIRE(::mkdtemp(dir_name) != nullptr);
  const std::string dir = dir_name;
  for (const bool gzip : {false, true}) {
    INFO("gzip: " << gzip);
    const std::string path = dir + (gzip ? "/bad.idx.gz" : "/bad.idx");
    write_file(path, idx({60000, 28, 28}, 16), gzip);  // 16 header bytes + 16 data bytes
    std::string message;
    {
      Counting counting;
      try {
        ladon::data::read_idx(path);
      } catch (const ladon::Error& e) {
        message = e.what();
      }
    }
    CHECK(message == "read_idx: '" + path +
                         "': truncated: header declares shape [60000, 28, 28] = 47040000 data bytes, found 16");
    // The first data buffer is 64 KiB; the rest is the path and the message. Trusting the header
    // would ask for 47040000 bytes in one piece.
    CHECK(largest.load() <= std::size_t{64} << 10);
    CHECK(total.load() <= std::size_t{80} << 10);

    // The counter does see the data buffer: a genuine 3 MB file grows it to its size.
    const std::string good = dir + (gzip ? "/good.idx.gz" : "/good.idx");
    write_file(good, idx({3000, 1000}, 3000000), gzip);
    {
      Counting counting;
      CHECK(ladon::data::read_idx(good).bytes.size() == 3000000);
    }
    CHECK(largest.load() >= 3000000);
    std::remove(path.c_str());
    std::remove(good.c_str());
  }
  ::rmdir(dir_name);
}
