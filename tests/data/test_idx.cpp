#include <doctest/doctest.h>

#include "data/idx.h"
#include "helpers.h"
#include "ladon.h"
#include "test_util.h"

using namespace ladon;
using namespace ladon::data;
using namespace ladon::data::test;
using namespace ladon::testing;

TEST_CASE("data/idx: round trip, plain and gzip, ranks 1..4") {
  TempDir dir;
  const std::vector<std::vector<std::uint32_t>> shapes = {{5}, {2, 3}, {2, 1, 3}, {1, 2, 2, 3}, {0, 28}};
  for (const auto& shape : shapes) {
    std::size_t n = 1;
    for (auto s : shape) n *= s;
    std::vector<std::uint8_t> data(n);
    for (std::size_t i = 0; i < n; ++i) data[i] = static_cast<std::uint8_t>(250 + i);  // wraps past 255
    for (bool gz : {false, true}) {
      CAPTURE(shape.size());
      CAPTURE(gz);
      const std::string path = dir.file(gz ? "a.idx.gz" : "a.idx");
      (gz ? write_gzip : write_plain)(path, idx_bytes(shape, data));
      const IdxArray a = read_idx(path);
      CHECK(a.shape == Shape(shape.begin(), shape.end()));
      CHECK(a.bytes == data);
    }
  }
}

TEST_CASE("data/idx: truncated data and trailing garbage name the file and both byte counts") {
  TempDir dir;
  const std::string path = dir.file("short.idx");
  write_plain(path, idx_bytes({2, 3}, {1, 2, 3, 4}));
  CHECK_THROWS_WITH_AS(
      read_idx(path),
      ("read_idx: '" + path + "': truncated: header declares shape [2, 3] = 6 data bytes, found 4").c_str(), Error);
  write_gzip(path, idx_bytes({2, 3}, {1, 2, 3, 4}));  // the same check after decompression
  CHECK_THROWS_WITH_AS(
      read_idx(path),
      ("read_idx: '" + path + "': truncated: header declares shape [2, 3] = 6 data bytes, found 4").c_str(), Error);
  write_plain(path, idx_bytes({2, 3}, {1, 2, 3, 4, 5, 6, 7, 8}));
  CHECK_THROWS_WITH_AS(
      read_idx(path),
      ("read_idx: '" + path + "': trailing garbage: header declares shape [2, 3] = 6 data bytes, found 8").c_str(),
      Error);
  write_plain(path, {0, 0, 8});
  CHECK_THROWS_WITH_AS(read_idx(path),
                       ("read_idx: '" + path + "': file too short for an IDX header (3 of 4 bytes)").c_str(), Error);
  write_plain(path, {0, 0, 8, 3, 0, 0, 0, 2, 0, 0});
  CHECK_THROWS_WITH_AS(
      read_idx(path),
      ("read_idx: '" + path + "': truncated IDX header: 12 bytes of sizes expected for rank 3, found 6").c_str(),
      Error);
}

TEST_CASE("data/idx: a header declaring far more data than the file holds fails cleanly") {
  TempDir dir;
  const std::string path = dir.file("huge.idx");
  // 2^48 bytes declared: must be reported as truncated, not allocated.
  write_plain(path, idx_bytes({65536, 65536, 65536}, {1, 2, 3}));
  CHECK_THROWS_WITH_AS(
      read_idx(path),
      ("read_idx: '" + path +
       "': truncated: header declares shape [65536, 65536, 65536] = 281474976710656 data bytes, found 3")
          .c_str(),
      Error);
  write_plain(path, idx_bytes({0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF}, {}));
  CHECK_THROWS_WITH_AS(
      read_idx(path),
      ("read_idx: '" + path + "': IDX shape [4294967295, 4294967295, 4294967295] declares more than 2^63 elements")
          .c_str(),
      Error);
  // A zero size makes the product zero, however large the other sizes.
  write_plain(path, idx_bytes({0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF, 0}, {}));
  const IdxArray empty = read_idx(path);
  CHECK(empty.shape == Shape{0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF, 0});
  CHECK(empty.bytes.empty());
}

TEST_CASE("data/idx: bad magic, element type and rank") {
  TempDir dir;
  const std::string path = dir.file("bad.idx");
  std::vector<std::uint8_t> bytes = idx_bytes({2}, {1, 2});
  bytes[1] = 0x2A;
  write_plain(path, bytes);
  CHECK_THROWS_WITH_AS(
      read_idx(path),
      ("read_idx: '" + path + "': not an IDX file: magic starts with 0x00 0x2A, expected 0x00 0x00").c_str(), Error);
  write_plain(path, idx_bytes({2}, {0, 0, 0, 0, 0, 0, 0, 0}, 0x0D));
  CHECK_THROWS_WITH_AS(
      read_idx(path),
      ("read_idx: '" + path + "': unsupported IDX element type 0x0D (float32); only 0x08 (unsigned byte) is supported")
          .c_str(),
      Error);
  write_plain(path, idx_bytes({2}, {1, 2}, 0x07));
  CHECK_THROWS_WITH_AS(read_idx(path), ("read_idx: '" + path + "': unknown IDX element type 0x07").c_str(), Error);
  write_plain(path, idx_bytes({1, 1, 1, 1, 1}, {7}));
  CHECK_THROWS_WITH_AS(read_idx(path), ("read_idx: '" + path + "': IDX rank 5 is outside 1..4").c_str(), Error);
  write_plain(path, idx_bytes({}, {7}));
  CHECK_THROWS_WITH_AS(read_idx(path), ("read_idx: '" + path + "': IDX rank 0 is outside 1..4").c_str(), Error);
}

TEST_CASE("data/idx: corrupt and truncated gzip") {
  TempDir dir;
  const std::string path = dir.file("c.idx.gz");
  std::vector<std::uint8_t> data(4096);
  for (std::size_t i = 0; i < data.size(); ++i) data[i] = static_cast<std::uint8_t>((i * 7919) >> 3);
  write_gzip(path, idx_bytes({64, 64}, data));
  const std::vector<std::uint8_t> good = read_plain(path);
  REQUIRE(good.size() > 40);

  // Garbage in the middle of the deflate stream.
  std::vector<std::uint8_t> corrupt = good;
  for (std::size_t i = 20; i < corrupt.size() - 12; i += 3) corrupt[i] ^= 0xA5;
  write_plain(path, corrupt);
  std::string message = error_message([&] { read_idx(path); });
  CHECK(contains(message, "read_idx: '" + path + "': corrupt or truncated gzip data ("));

  // Only the CRC trailer damaged: every byte decodes but the checksum fails.
  corrupt = good;
  corrupt[corrupt.size() - 8] ^= 0xFF;
  write_plain(path, corrupt);
  CHECK_THROWS_WITH_AS(read_idx(path),
                       ("read_idx: '" + path + "': corrupt or truncated gzip data (incorrect data check)").c_str(),
                       Error);

  // Cut short: the stream ends before its trailer.
  write_plain(path, std::vector<std::uint8_t>(good.begin(), good.end() - 6));
  CHECK_THROWS_WITH_AS(read_idx(path),
                       ("read_idx: '" + path + "': corrupt or truncated gzip data (unexpected end of file)").c_str(),
                       Error);
}

TEST_CASE("data/idx: missing file and directory") {
  TempDir dir;
  const std::string path = dir.file("nope.idx");
  CHECK_THROWS_WITH_AS(read_idx(path), ("read_idx: cannot open '" + path + "': No such file or directory").c_str(),
                       Error);
  const std::string message = error_message([&] { read_idx(dir.path().string()); });
  CHECK(contains(message, "read_idx: cannot read '" + dir.path().string() + "': "));
}
