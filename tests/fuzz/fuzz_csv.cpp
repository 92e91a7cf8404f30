// libFuzzer target: data::CsvReader and, where a file parses, a FeatureSet fitted and applied on it.
// The input is two option bytes, then the file:
//   byte 0: bits 0-1 the delimiter (, ; tab |), bit 2 a header line (else columns a, b, c are given),
//           bit 3 trim, bit 4 the missing markers {"NA", "-"} (else the default "" and "?"),
//           bit 5 tiny chunks and read blocks (3 rows, 7 bytes: every boundary gets crossed),
//           bit 6 skip one raw line first
//   byte 1: the features: bit 0 numeric log1p, bit 1 numeric buckets (3), bit 2 a missing indicator,
//           bit 3 hashed categories, bit 4 a multi-valued column, bit 5 a mapped label, bit 6 fit
//           by streaming the reader (else on the whole file as one chunk)
// Every input must parse or throw ladon::Error, and so must fit and transform. Invariants checked
// (an abort is a finding): streaming in chunks gives the same fields as one chunk, and a
// FeatureSet rebuilt from its state_dict transforms to the same tensors.
#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include "core/ops.h"
#include "data/csv_reader.h"
#include "data/feature_set.h"
#include "fuzz_util.h"

namespace {

using namespace ladon;

data::CsvOptions options_from(std::uint8_t bits) {
  data::CsvOptions o;
  o.delimiter = ",;\t|"[bits & 3];
  o.header = (bits & 4) != 0;
  if (!o.header) o.columns = {"a", "b", "c"};
  o.trim = (bits & 8) != 0;
  if (bits & 16) o.missing = {"NA", "-"};
  // Small reads either way: the defaults (64k rows, 1 MiB blocks) would make every input pay for
  // megabytes of buffers.
  o.chunk_rows = (bits & 32) ? 3 : 1000;
  o.block_bytes = (bits & 32) ? 7 : 4096;
  if (bits & 64) o.skip_lines = 1;
  return o;
}

// Every field of every chunk, as text and missing flags, with number() tried on each.
struct Cells {
  std::vector<std::string> text;
  std::vector<bool> missing;
  bool operator==(const Cells&) const = default;
};
void collect(const data::CsvChunk& chunk, Cells& out) {
  for (std::int64_t r = 0; r < chunk.rows(); ++r)
    for (std::int64_t c = 0; c < chunk.cols(); ++c) {
      out.text.emplace_back(chunk.text(c, r));
      out.missing.push_back(chunk.missing(c, r));
      try {
        (void)chunk.number(c, r);
      } catch (const Error&) {
      }
    }
}

bool same(const data::TabularDataset& a, const data::TabularDataset& b) {
  const auto same_tensor = [](const Tensor& x, const Tensor& y) {
    if (x.defined() != y.defined()) return false;
    if (!x.defined()) return true;
    if (x.shape() != y.shape() || x.dtype() != y.dtype()) return false;
    if (x.dtype() == Dtype::int64) return x.to_vector<std::int64_t>() == y.to_vector<std::int64_t>();
    const auto u = x.to_vector<float>(), v = y.to_vector<float>();
    for (std::size_t i = 0; i < u.size(); ++i)
      if (!(u[i] == v[i] || (u[i] != u[i] && v[i] != v[i]))) return false;
    return true;
  };
  if (a.rows != b.rows || a.fields.size() != b.fields.size() || a.labels.size() != b.labels.size()) return false;
  for (std::size_t f = 0; f < a.fields.size(); ++f)
    if (!same_tensor(a.fields[f].ids, b.fields[f].ids) || !same_tensor(a.fields[f].offsets, b.fields[f].offsets) ||
        !same_tensor(a.fields[f].values, b.fields[f].values))
      return false;
  for (std::size_t t = 0; t < a.labels.size(); ++t)
    if (!same_tensor(a.labels[t], b.labels[t]) || !same_tensor(a.masks[t], b.masks[t])) return false;
  return true;
}

data::FeatureSet features(std::uint8_t bits, const std::vector<std::string>& names) {
  const auto name = [&](std::size_t i) { return names[i % names.size()]; };
  data::FeatureSet fs;
  if (bits & 8)
    fs.categorical(name(0), {.hash_buckets = 5, .field = "cat"});
  else
    fs.categorical(name(0), {.min_count = 2, .field = "cat"});
  fs.numeric(name(1), {.log1p = (bits & 1) != 0,
                       .missing_indicator = (bits & 4) != 0,
                       .buckets = (bits & 2) ? 3 : 0,
                       .field = "num"});
  if (bits & 16) fs.multi_categorical(name(2), {.separator = ' ', .field = "bag"});
  if (bits & 32)
    fs.label("task", name(2), {.map = {{"yes", 1}, {"no", 0}}});
  else
    fs.label("task", name(1));
  return fs;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 2) return 0;
  const data::CsvOptions options = options_from(data[0]);
  const std::uint8_t feature_bits = data[1];
  const std::string path = fuzz::write_input(data + 2, size - 2);

  // The whole file at once, then in chunks: the same cells, or both fail.
  data::CsvChunk whole;
  Cells all;
  try {
    whole = data::read_csv(path, options);
    collect(whole, all);
  } catch (const Error&) {
    try {
      data::CsvReader reader(path, options);
      data::CsvChunk chunk;
      while (reader.next(chunk)) {
      }
    } catch (const Error&) {
      return 0;
    }
    std::abort();  // read in chunks, but not in one
  }
  Cells streamed;
  {
    data::CsvReader reader(path, options);  // it read once: it must read again, the same
    data::CsvChunk chunk;
    while (reader.next(chunk)) collect(chunk, streamed);
    if (!(streamed == all)) std::abort();
  }
  if (whole.cols() == 0) return 0;

  try {
    data::FeatureSet fs = features(feature_bits, whole.names());
    if (feature_bits & 64) {
      data::CsvReader reader(path, options);
      fs.fit(reader);
    } else {
      fs.fit(whole);
    }
    const data::TabularDataset out = fs.transform(whole);
    const data::FeatureSet again = data::FeatureSet::from_state(fs.state_dict());
    if (!same(out, again.transform(whole))) std::abort();
  } catch (const Error&) {
  }
  return 0;
}
