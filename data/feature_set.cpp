#include "feature_set.h"

#include <algorithm>
#include <cmath>
#include <set>

#include "../core/error.h"
#include "../core/ops.h"

namespace ladon::data {

namespace {

using Kind = FeatureSet::Kind;
using Column = FeatureSet::Column;

std::uint64_t fnv1a(std::string_view text) {
  std::uint64_t h = 14695981039346656037ull;
  for (char c : text) {
    h ^= static_cast<unsigned char>(c);
    h *= 1099511628211ull;
  }
  return h;
}

bool bucketed(const Column& c) { return c.kind == Kind::numeric && c.numeric.buckets > 1; }
std::int64_t hash_buckets(const Column& c) {
  return c.kind == Kind::multi_categorical ? c.multi.hash_buckets : c.categorical.hash_buckets;
}

// Calls fn(piece) for each piece of `text` split at `sep` (empty pieces skipped).
template <typename Fn>
void for_each_piece(std::string_view text, char sep, Fn&& fn) {
  std::size_t start = 0;
  while (start <= text.size()) {
    std::size_t end = text.find(sep, start);
    if (end == std::string_view::npos) end = text.size();
    if (end > start) fn(text.substr(start, end - start));
    start = end + 1;
  }
}

// What fitting gathers over every chunk of the training split.
struct Accumulator {
  std::unordered_map<std::string, std::int64_t> counts;
  std::vector<double> values;
};

double numeric_value(const Column& c, const CsvChunk& chunk, std::int64_t col, std::int64_t row) {
  double x = chunk.number(col, row);
  if (c.numeric.log1p) {
    LADON_CHECK(x > -1.0, "FeatureSet", chunk.where(col, row), ": log1p needs a value > -1, got ", x);
    x = std::log1p(x);
  }
  return x;
}

void accumulate(const Column& c, Accumulator& acc, const CsvChunk& chunk) {
  if (c.kind == Kind::label) return;
  const std::int64_t col = chunk.column(c.source);
  for (std::int64_t r = 0; r < chunk.rows(); ++r) {
    if (chunk.missing(col, r)) continue;
    if (c.kind == Kind::numeric) {
      acc.values.push_back(numeric_value(c, chunk, col, r));
    } else if (hash_buckets(c) == 0) {
      if (c.kind == Kind::categorical)
        ++acc.counts[std::string(chunk.text(col, r))];
      else
        for_each_piece(chunk.text(col, r), c.multi.separator, [&](std::string_view p) { ++acc.counts[std::string(p)]; });
    }
  }
}

void finish_fit(Column& c, Accumulator& acc) {
  c.vocabulary.clear();
  c.index.clear();
  c.boundaries.clear();
  c.mean = 0;
  c.std = 1;
  if (c.kind == Kind::numeric) {
    if (bucketed(c)) {
      std::vector<double>& v = acc.values;
      std::sort(v.begin(), v.end());
      const std::size_t n = v.size();
      if (c.numeric.per_value) {
        std::vector<double> distinct;
        for (double x : v)
          if (distinct.empty() || x > distinct.back()) distinct.push_back(x);
        if (static_cast<std::int64_t>(distinct.size()) <= c.numeric.buckets) {
          for (std::size_t i = 1; i < distinct.size(); ++i) c.boundaries.push_back((distinct[i - 1] + distinct[i]) / 2);
          return;
        }
      }
      for (std::int64_t k = 1; k < c.numeric.buckets && n > 0; ++k) {
        const double b = v[std::min(n - 1, static_cast<std::size_t>(k) * n / static_cast<std::size_t>(c.numeric.buckets))];
        if (c.boundaries.empty() || b > c.boundaries.back()) c.boundaries.push_back(b);
      }
    } else if (c.numeric.standardize && !acc.values.empty()) {
      double sum = 0;
      for (double x : acc.values) sum += x;
      c.mean = sum / static_cast<double>(acc.values.size());
      double sq = 0;
      for (double x : acc.values) sq += (x - c.mean) * (x - c.mean);
      c.std = std::sqrt(sq / static_cast<double>(acc.values.size()));
      if (!(c.std > 0)) c.std = 1;
    }
    return;
  }
  if (c.kind == Kind::label || hash_buckets(c) > 0) return;
  const std::int64_t min_count = c.kind == Kind::categorical ? c.categorical.min_count : c.multi.min_count;
  std::vector<std::pair<std::string, std::int64_t>> kept;
  for (auto& [text, count] : acc.counts)
    if (count >= min_count) kept.emplace_back(text, count);
  std::sort(kept.begin(), kept.end(), [](const auto& a, const auto& b) {
    return a.second != b.second ? a.second > b.second : a.first < b.first;
  });
  for (auto& [text, count] : kept) {
    c.index.emplace(text, static_cast<std::int64_t>(c.vocabulary.size()) + 2);
    c.vocabulary.push_back(text);
  }
}

std::int64_t cardinality(const Column& c) {
  if (bucketed(c)) return static_cast<std::int64_t>(c.boundaries.size()) + 2;
  if (hash_buckets(c) > 0) return hash_buckets(c) + 1;
  return static_cast<std::int64_t>(c.vocabulary.size()) + 2;
}

std::int64_t category_id(const Column& c, std::string_view text) {
  if (hash_buckets(c) > 0) return 1 + static_cast<std::int64_t>(fnv1a(text) % static_cast<std::uint64_t>(hash_buckets(c)));
  const auto it = c.index.find(std::string(text));
  return it == c.index.end() ? 0 : it->second;
}

TabularDataset concat(std::vector<TabularDataset> parts) {
  if (parts.size() == 1) return std::move(parts[0]);
  TabularDataset out = parts[0];
  auto join = [&](auto get, bool is_offsets) {
    std::vector<Tensor> ts;
    for (TabularDataset& p : parts) ts.push_back(get(p));
    if (!ts[0].defined()) return Tensor();
    if (!is_offsets) return cat(ts, 0);
    // CSR offsets: drop each later part's leading 0 and shift by the ids before it.
    std::vector<std::int64_t> all = {0};
    std::int64_t base = 0;
    for (const Tensor& t : ts) {
      const std::vector<std::int64_t> o = t.to_vector<std::int64_t>();
      for (std::size_t i = 1; i < o.size(); ++i) all.push_back(base + o[i]);
      base += o.back();
    }
    return tensor(all, {static_cast<std::int64_t>(all.size())});
  };
  for (std::size_t f = 0; f < out.fields.size(); ++f) {
    out.fields[f].ids = join([&](TabularDataset& p) { return p.fields[f].ids; }, false);
    out.fields[f].values = join([&](TabularDataset& p) { return p.fields[f].values; }, false);
    out.fields[f].offsets = join([&](TabularDataset& p) { return p.fields[f].offsets; }, true);
  }
  for (std::size_t t = 0; t < out.labels.size(); ++t) {
    out.labels[t] = join([&](TabularDataset& p) { return p.labels[t]; }, false);
    out.masks[t] = join([&](TabularDataset& p) { return p.masks[t]; }, false);
  }
  out.rows = 0;
  for (const TabularDataset& p : parts) out.rows += p.rows;
  return out;
}

}  // namespace

FeatureSet& FeatureSet::add(Column column) {
  const char* op = "FeatureSet";
  for (const Column& c : columns_)
    LADON_CHECK(c.name != column.name, op, "'", column.name, "' is declared twice");
  LADON_CHECK(!column.name.empty() && column.name.find('.') == std::string::npos, op, "name '", column.name,
              "' must be non-empty without '.'");
  LADON_CHECK(column.categorical.min_count >= 1 && column.multi.min_count >= 1, op, "'", column.name,
              "': min_count must be >= 1");
  LADON_CHECK(column.categorical.hash_buckets >= 0 && column.multi.hash_buckets >= 0, op, "'", column.name,
              "': hash_buckets must be >= 0");
  LADON_CHECK(column.numeric.buckets == 0 || column.numeric.buckets > 1, op, "'", column.name,
              "': buckets must be 0 (none) or > 1, got ", column.numeric.buckets);
  LADON_CHECK(!column.numeric.per_value || column.numeric.buckets > 1, op, "'", column.name,
              "': per_value needs buckets > 1");
  columns_.push_back(std::move(column));
  fitted_ = false;
  return *this;
}

namespace {
Column make_column(Kind kind, const std::string& name, const std::string& source) {
  Column c;
  c.kind = kind;
  c.name = name;
  c.source = source;
  return c;
}
}  // namespace

FeatureSet& FeatureSet::categorical(const std::string& column, CategoricalOptions options) {
  Column c = make_column(Kind::categorical, options.field.empty() ? column : options.field, column);
  c.categorical = std::move(options);
  return add(std::move(c));
}
FeatureSet& FeatureSet::numeric(const std::string& column, NumericOptions options) {
  Column c = make_column(Kind::numeric, options.field.empty() ? column : options.field, column);
  c.numeric = std::move(options);
  return add(std::move(c));
}
FeatureSet& FeatureSet::multi_categorical(const std::string& column, MultiCategoricalOptions options) {
  Column c = make_column(Kind::multi_categorical, options.field.empty() ? column : options.field, column);
  c.multi = std::move(options);
  return add(std::move(c));
}
FeatureSet& FeatureSet::label(const std::string& task, const std::string& column, LabelOptions options) {
  Column c = make_column(Kind::label, task, column);
  c.label = std::move(options);
  return add(std::move(c));
}

void FeatureSet::fit(const CsvChunk& chunk) {
  LADON_CHECK(chunk.rows() > 0, "FeatureSet", "fit: ", chunk.file(), ": the training split has no rows");
  std::vector<Accumulator> acc(columns_.size());
  for (std::size_t i = 0; i < columns_.size(); ++i) accumulate(columns_[i], acc[i], chunk);
  for (std::size_t i = 0; i < columns_.size(); ++i) finish_fit(columns_[i], acc[i]);
  fitted_ = true;
}

void FeatureSet::fit(CsvReader& reader) {
  std::vector<Accumulator> acc(columns_.size());
  CsvChunk chunk;
  std::int64_t rows = 0;
  while (reader.next(chunk)) {
    rows += chunk.rows();
    for (std::size_t i = 0; i < columns_.size(); ++i) accumulate(columns_[i], acc[i], chunk);
  }
  LADON_CHECK(rows > 0, "FeatureSet", "fit: ", reader.path(), ": the training split has no rows");
  for (std::size_t i = 0; i < columns_.size(); ++i) finish_fit(columns_[i], acc[i]);
  fitted_ = true;
}

TabularDataset FeatureSet::transform(const CsvChunk& chunk) const {
  const char* op = "FeatureSet";
  LADON_CHECK(fitted_, op, "transform before fit (or load_state_dict)");
  const std::int64_t n = chunk.rows();
  TabularDataset out;
  out.rows = n;
  for (const Column& c : columns_) {
    const std::int64_t col = chunk.column(c.source);
    if (c.kind == Kind::label) {
      Tensor y = zeros({n, 1}), m = zeros({n, 1});
      float* py = y.data<float>();
      float* pm = m.data<float>();
      for (std::int64_t r = 0; r < n; ++r) {
        if (chunk.missing(col, r)) continue;
        pm[r] = 1;
        if (c.label.map.empty()) {
          py[r] = static_cast<float>(chunk.number(col, r));
          continue;
        }
        const std::string_view t = chunk.text(col, r);
        const auto it = std::find_if(c.label.map.begin(), c.label.map.end(), [&](const auto& e) { return e.first == t; });
        if (it == c.label.map.end()) {
          std::string known;
          for (const auto& e : c.label.map) known += (known.empty() ? "'" : ", '") + e.first + "'";
          detail::fail(op, chunk.where(col, r), ": label '", t, "' of task '", c.name, "' is not one of ", known);
        }
        py[r] = static_cast<float>(it->second);
      }
      out.task_names.push_back(c.name);
      out.labels.push_back(y);
      out.masks.push_back(m);
      continue;
    }
    TabularDataset::Field field;
    field.spec.name = c.name;
    if (c.kind == Kind::numeric && !bucketed(c)) {
      const std::int64_t width = c.numeric.missing_indicator ? 2 : 1;
      field.spec = {.name = c.name, .kind = nn::FieldKind::numeric, .cardinality = 0, .width = width};
      field.values = zeros({n, width});
      float* v = field.values.data<float>();
      for (std::int64_t r = 0; r < n; ++r) {
        if (chunk.missing(col, r)) {
          if (width == 2) v[r * 2 + 1] = 1;
          continue;
        }
        v[r * width] = static_cast<float>((numeric_value(c, chunk, col, r) - c.mean) / c.std);
      }
    } else if (c.kind == Kind::multi_categorical) {
      field.spec = {.name = c.name, .kind = nn::FieldKind::multi_categorical, .cardinality = cardinality(c), .width = 1};
      std::vector<std::int64_t> ids, offsets = {0};
      for (std::int64_t r = 0; r < n; ++r) {
        if (!chunk.missing(col, r))
          for_each_piece(chunk.text(col, r), c.multi.separator, [&](std::string_view p) { ids.push_back(category_id(c, p)); });
        offsets.push_back(static_cast<std::int64_t>(ids.size()));
      }
      field.ids = tensor(ids, {static_cast<std::int64_t>(ids.size())});
      field.offsets = tensor(offsets, {n + 1});
    } else {
      field.spec = {.name = c.name, .kind = nn::FieldKind::categorical, .cardinality = cardinality(c), .width = 1};
      field.ids = empty({n}, Dtype::int64);
      std::int64_t* ids = field.ids.data<std::int64_t>();
      for (std::int64_t r = 0; r < n; ++r) {
        if (bucketed(c)) {
          if (chunk.missing(col, r)) {
            ids[r] = 0;
          } else {
            const double x = numeric_value(c, chunk, col, r);
            ids[r] = 1 + (std::upper_bound(c.boundaries.begin(), c.boundaries.end(), x) - c.boundaries.begin());
          }
        } else if (chunk.missing(col, r)) {
          ids[r] = hash_buckets(c) > 0 ? 0 : 1;
        } else {
          ids[r] = category_id(c, chunk.text(col, r));
        }
      }
    }
    out.fields.push_back(std::move(field));
  }
  return out;
}

TabularDataset FeatureSet::transform(CsvReader& reader) const {
  std::vector<TabularDataset> parts;
  CsvChunk chunk;
  while (reader.next(chunk)) parts.push_back(transform(chunk));
  LADON_CHECK(!parts.empty(), "FeatureSet", "transform: ", reader.path(), ": no rows");
  return concat(std::move(parts));
}

std::vector<nn::FieldSpec> FeatureSet::fields() const {
  LADON_CHECK(fitted_, "FeatureSet", "fields() before fit (cardinalities come from fitting)");
  std::vector<nn::FieldSpec> out;
  for (const Column& c : columns_) {
    if (c.kind == Kind::label) continue;
    if (c.kind == Kind::numeric && !bucketed(c))
      out.push_back({.name = c.name, .kind = nn::FieldKind::numeric, .cardinality = 0, .width = c.numeric.missing_indicator ? 2 : 1});
    else
      out.push_back({.name = c.name,
                     .kind = c.kind == Kind::multi_categorical ? nn::FieldKind::multi_categorical : nn::FieldKind::categorical,
                     .cardinality = cardinality(c),
                     .width = 1});
  }
  return out;
}

std::vector<std::string> FeatureSet::task_names() const {
  std::vector<std::string> out;
  for (const Column& c : columns_)
    if (c.kind == Kind::label) out.push_back(c.name);
  return out;
}

const std::vector<std::string>& FeatureSet::vocabulary(const std::string& field) const {
  for (const Column& c : columns_)
    if (c.name == field && c.kind != Kind::label) return c.vocabulary;
  detail::fail("FeatureSet", "no feature '", field, "'");
}

// ---- state ----------------------------------------------------------------------------------------
// "columns", "fitted"; per column i under "<i>.": kind, name, source, the options, and what was
// fitted: vocab (entries joined by '\0') with vocab_size, mean, std, boundaries (count and each as
// a double, so a reloaded set buckets exactly as the fitted one), label map entries.

namespace {
std::string key(std::size_t i, const std::string& what) { return std::to_string(i) + "." + what; }
}  // namespace

nn::StateDict FeatureSet::state_dict() const {
  nn::StateDict s;
  s.set("columns", columns_.size());
  s.set("fitted", fitted_ ? 1 : 0);
  for (std::size_t i = 0; i < columns_.size(); ++i) {
    const Column& c = columns_[i];
    s.set(key(i, "kind"), static_cast<std::int64_t>(c.kind));
    s.set(key(i, "name"), c.name);
    s.set(key(i, "source"), c.source);
    s.set(key(i, "min_count"), c.categorical.min_count);
    s.set(key(i, "hash_buckets"), c.categorical.hash_buckets);
    s.set(key(i, "log1p"), c.numeric.log1p ? 1 : 0);
    s.set(key(i, "standardize"), c.numeric.standardize ? 1 : 0);
    s.set(key(i, "missing_indicator"), c.numeric.missing_indicator ? 1 : 0);
    s.set(key(i, "buckets"), c.numeric.buckets);
    s.set(key(i, "per_value"), c.numeric.per_value ? 1 : 0);
    s.set(key(i, "separator"), std::string(1, c.multi.separator));
    s.set(key(i, "multi_min_count"), c.multi.min_count);
    s.set(key(i, "multi_hash_buckets"), c.multi.hash_buckets);
    s.set(key(i, "map_size"), c.label.map.size());
    for (std::size_t k = 0; k < c.label.map.size(); ++k) {
      s.set(key(i, "map." + std::to_string(k) + ".text"), c.label.map[k].first);
      s.set(key(i, "map." + std::to_string(k) + ".value"), c.label.map[k].second);
    }
    // The entries concatenated, with their lengths: any byte, NUL too, may be in a category.
    std::string vocab;
    std::vector<std::int64_t> lengths;
    for (const std::string& v : c.vocabulary) {
      vocab += v;
      lengths.push_back(static_cast<std::int64_t>(v.size()));
    }
    s.set(key(i, "vocab_size"), c.vocabulary.size());
    s.set(key(i, "vocab"), vocab);
    s.set(key(i, "vocab_lengths"), tensor(lengths, {static_cast<std::int64_t>(lengths.size())}));
    s.set(key(i, "mean"), c.mean);
    s.set(key(i, "std"), c.std);
    s.set(key(i, "boundaries"), c.boundaries.size());
    for (std::size_t k = 0; k < c.boundaries.size(); ++k) s.set(key(i, "boundary." + std::to_string(k)), c.boundaries[k]);
  }
  return s;
}

namespace {
// Rebuilds the columns from a state, throwing (naming the entry) on anything malformed.
std::vector<Column> columns_from(const nn::StateDict& s, bool& fitted) {
  const char* op = "FeatureSet";
  const std::int64_t n = s.integer("columns", op);
  LADON_CHECK(n >= 0, op, "state has ", n, " columns");
  fitted = s.integer("fitted", op) != 0;
  std::vector<Column> out;
  for (std::size_t i = 0; i < static_cast<std::size_t>(n); ++i) {
    Column c;
    const std::int64_t kind = s.integer(key(i, "kind"), op);
    LADON_CHECK(kind >= 0 && kind <= 3, op, "state entry '", key(i, "kind"), "' is ", kind, ", not a column kind");
    c.kind = static_cast<Kind>(kind);
    c.name = s.string(key(i, "name"), op);
    c.source = s.string(key(i, "source"), op);
    // Member by member: the options' field names are not saved (the column's name is).
    c.categorical.min_count = s.integer(key(i, "min_count"), op);
    c.categorical.hash_buckets = s.integer(key(i, "hash_buckets"), op);
    c.numeric.log1p = s.integer(key(i, "log1p"), op) != 0;
    c.numeric.standardize = s.integer(key(i, "standardize"), op) != 0;
    c.numeric.missing_indicator = s.integer(key(i, "missing_indicator"), op) != 0;
    c.numeric.buckets = s.integer(key(i, "buckets"), op);
    // Absent from states saved before the option existed: their boundaries are quantiles.
    c.numeric.per_value = s.contains(key(i, "per_value")) && s.integer(key(i, "per_value"), op) != 0;
    const std::string& sep = s.string(key(i, "separator"), op);
    LADON_CHECK(sep.size() == 1, op, "state entry '", key(i, "separator"), "' must be one character");
    c.multi.separator = sep[0];
    c.multi.min_count = s.integer(key(i, "multi_min_count"), op);
    c.multi.hash_buckets = s.integer(key(i, "multi_hash_buckets"), op);
    const std::int64_t map_size = s.integer(key(i, "map_size"), op);
    for (std::int64_t k = 0; k < map_size; ++k)
      c.label.map.emplace_back(s.string(key(i, "map." + std::to_string(k) + ".text"), op),
                               s.number(key(i, "map." + std::to_string(k) + ".value"), op));
    const std::int64_t vocab_size = s.integer(key(i, "vocab_size"), op);
    const std::string& vocab = s.string(key(i, "vocab"), op);
    const Tensor& lengths = s.tensor(key(i, "vocab_lengths"), op);
    LADON_CHECK(lengths.dtype() == Dtype::int64 && lengths.dim() == 1 && lengths.numel() == vocab_size, op,
                "state entry '", key(i, "vocab_lengths"), "' must be int64 [", vocab_size, "], got ",
                dtype_name(lengths.dtype()), " ", shape_str(lengths.shape()));
    std::size_t start = 0;
    for (std::int64_t k = 0; k < vocab_size; ++k) {
      const std::int64_t length = lengths.data<std::int64_t>()[k];
      LADON_CHECK(length >= 0 && static_cast<std::uint64_t>(length) <= vocab.size() - start, op, "state entry '",
                  key(i, "vocab_lengths"), "' runs past the ", vocab.size(), " bytes of '", key(i, "vocab"),
                  "' at entry ", k);
      c.vocabulary.push_back(vocab.substr(start, static_cast<std::size_t>(length)));
      c.index.emplace(c.vocabulary.back(), k + 2);
      start += static_cast<std::size_t>(length);
    }
    LADON_CHECK(start == vocab.size(), op, "state entry '", key(i, "vocab"), "' has ", vocab.size() - start,
                " bytes beyond its ", vocab_size, " entries");
    c.mean = s.number(key(i, "mean"), op);
    c.std = s.number(key(i, "std"), op);
    const std::int64_t nb = s.integer(key(i, "boundaries"), op);
    for (std::int64_t k = 0; k < nb; ++k) c.boundaries.push_back(s.number(key(i, "boundary." + std::to_string(k)), op));
    out.push_back(std::move(c));
  }
  return out;
}
}  // namespace

void FeatureSet::check_state_dict(const nn::StateDict& state) const {
  bool fitted = false;
  const std::vector<Column> cols = columns_from(state, fitted);
  if (columns_.empty()) return;  // an empty set takes whatever the state declares
  LADON_CHECK(cols.size() == columns_.size(), "FeatureSet", "the state has ", cols.size(), " columns, this set ",
              columns_.size());
  for (std::size_t i = 0; i < cols.size(); ++i)
    LADON_CHECK(cols[i].name == columns_[i].name && cols[i].kind == columns_[i].kind, "FeatureSet", "column ", i,
                " is '", cols[i].name, "' in the state, '", columns_[i].name, "' here");
}

void FeatureSet::load_state_dict(const nn::StateDict& state) {
  check_state_dict(state);
  columns_ = columns_from(state, fitted_);
}

FeatureSet FeatureSet::from_state(const nn::StateDict& state) {
  FeatureSet fs;
  fs.load_state_dict(state);
  return fs;
}

}  // namespace ladon::data
