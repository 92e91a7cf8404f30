// IDX files (the MNIST / Fashion-MNIST format), plain or gzip-compressed.
//
// Layout: two zero bytes, an element-type byte, a rank byte, then `rank` big-endian uint32 sizes,
// then the elements in row-major order. Only the unsigned-byte type (0x08) is supported: it is the
// one every MNIST-style data set uses.
#pragma once

#include "layer_fence.h"

#include <cstdint>
#include <string>
#include <vector>

#include "../core/tensor.h"

namespace ladon::data {

struct IdxArray {
  Shape shape;                      // rank 1..4, as declared in the header
  std::vector<std::uint8_t> bytes;  // shape_numel(shape) elements, row-major
};

// Reads `path`, decompressing transparently when it is gzip. Throws ladon::Error naming the path
// when the file is missing or unreadable, the gzip stream is corrupt or truncated, the header is
// malformed (magic, type, rank), or the data is shorter or longer than the header declares.
// Never reads past what the header declares into memory, and never allocates from an untrusted
// size before the bytes actually arrive.
IdxArray read_idx(const std::string& path);

}  // namespace ladon::data
