// Feature columns with transforms fitted on the training split, turning CSV chunks into a
// TabularDataset of named feature tensors and per-task labels with masks.
//
//   data::FeatureSet fs;
//   fs.categorical("workclass", {.min_count = 5})
//     .numeric("capital-gain", {.log1p = true, .missing_indicator = true})
//     .numeric("age", {.buckets = 10})                          // quantile buckets -> an id
//     .multi_categorical("genres", {.separator = '|'})
//     .label("income", "income", {.map = {{">50K", 1}, {"<=50K", 0}}});
//   fs.fit(train_chunk);                                         // or fit(reader): streams chunks
//   data::TabularDataset train = fs.transform(train_chunk), test = fs.transform(test_chunk);
//   nn::FeatureEmbedding front({.fields = fs.fields(), .dim = 8});
//
// Ids, per field kind:
//   categorical with a vocabulary: 0 out-of-vocabulary (never seen in training, or seen fewer than
//     min_count times), 1 missing, 2.. the vocabulary in order of falling count (ties by text);
//   categorical hashed into N buckets: 0 missing, 1 + (FNV-1a 64 of the text mod N);
//   numeric with buckets B: 0 missing, 1 + the number of fitted boundaries <= the value; the
//     boundaries are the sorted training values at ranks k n / B (k = 1 .. B-1, repeats dropped),
//     or with per_value, when there are at most B distinct values v_1 < .. < v_m, the midpoints
//     (v_i + v_{i+1}) / 2, so v_i gets id i and an unseen value the id of its nearer neighbour;
//   multi-valued: each element of the split text as a categorical id (missing: an empty bag).
// A numeric value becomes log1p(x) when asked (x must be > -1), then (x - mean) / std with the
// training mean and population std (std 0 counts as 1); a missing value becomes 0 (the training
// mean) and, with missing_indicator, a second column holds 1 for missing.
// A label maps text to a number by `map` (empty map: the text is a number); a missing label gets
// mask 0 (value 0), anything else unmapped is an error naming file, line and column.
//
// FeatureSet is nn::Stateful: its state_dict holds the specs and everything fitted, so
//   nn::save_checkpoint(path, model, {.extra = {{"features", &fs}}}) ... FeatureSet::from_state()
// rebuilds the exact transforms from a checkpoint alone.
#pragma once

#include "layer_fence.h"

#include <cstdint>
#include <map>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "../core/tensor.h"
#include "../nn/feature_embedding.h"
#include "../nn/state.h"
#include "csv_reader.h"

namespace ladon::data {

struct CategoricalOptions {
  std::int64_t min_count = 1;     // vocabulary: categories seen fewer times in training go to id 0
  std::int64_t hash_buckets = 0;  // > 0: hash into this many buckets instead of a vocabulary
  std::string field = {};         // the field's name; default the column's
};

struct NumericOptions {
  bool log1p = false;
  bool standardize = true;
  bool missing_indicator = false;
  std::int64_t buckets = 0;  // > 1: quantile buckets, the field becomes categorical (ids)
  // With buckets: a column with at most `buckets` distinct training values gets one bucket per
  // value (as histogram gradient boosting bins it), so a rare value keeps its own id instead of
  // sharing a quantile bucket; more distinct values than that: quantile buckets as usual.
  bool per_value = false;
  std::string field = {};    // the field's name; default the column's (so one column can feed two fields)
};

struct MultiCategoricalOptions {
  char separator = '|';
  std::int64_t min_count = 1;
  std::int64_t hash_buckets = 0;
  std::string field = {};
};

struct LabelOptions {
  std::vector<std::pair<std::string, double>> map = {};  // empty: the text is a number
};

// The transformed rows: one entry per field (in the order declared), one label and mask per task.
struct TabularDataset {
  struct Field {
    nn::FieldSpec spec;
    Tensor ids;      // int64 [N] (categorical) or [total] (multi-valued)
    Tensor offsets;  // int64 [N + 1], multi-valued only: row r's ids are ids[offsets[r] .. offsets[r + 1])
    Tensor values;   // float32 [N, width] (numeric)
  };
  std::vector<Field> fields;
  std::vector<std::string> task_names;
  std::vector<Tensor> labels;  // float32 [N, 1] per task
  std::vector<Tensor> masks;   // float32 [N, 1] per task: 1 labelled, 0 missing
  std::int64_t rows = 0;
  std::int64_t size() const { return rows; }
};

class FeatureSet : public nn::Stateful {
 public:
  // Each names a CSV column; a feature's field name is its column's unless options.field names it
  // (a column may feed several fields, e.g. a value and its buckets). Throw on a repeated
  // name or a bad option (min_count < 1, hash_buckets < 0, buckets == 1 or < 0, per_value
  // without buckets).
  FeatureSet& categorical(const std::string& column, CategoricalOptions options = {});
  FeatureSet& numeric(const std::string& column, NumericOptions options = {});
  FeatureSet& multi_categorical(const std::string& column, MultiCategoricalOptions options = {});
  FeatureSet& label(const std::string& task, const std::string& column, LabelOptions options = {});

  // Fits every transform on the rows given (replacing any earlier fit). Throws on an empty split,
  // a missing column, or a bad value (naming file, line, column).
  void fit(const CsvChunk& chunk);
  void fit(CsvReader& reader);  // streams every chunk once
  bool fitted() const { return fitted_; }

  TabularDataset transform(const CsvChunk& chunk) const;  // throws unless fitted
  TabularDataset transform(CsvReader& reader) const;      // every remaining chunk, concatenated

  // What nn::FeatureEmbedding needs, in declared order (labels excluded).
  std::vector<nn::FieldSpec> fields() const;
  std::vector<std::string> task_names() const;
  // A fitted categorical field's vocabulary, id 2 first (empty when hashed or bucketed).
  const std::vector<std::string>& vocabulary(const std::string& field) const;

  nn::StateDict state_dict() const override;
  void check_state_dict(const nn::StateDict& state) const override;
  void load_state_dict(const nn::StateDict& state) override;
  static FeatureSet from_state(const nn::StateDict& state);

  // Implementation detail, public for the .cpp's helpers.
  enum class Kind { categorical, numeric, multi_categorical, label };
  struct Column {
    Kind kind = Kind::categorical;
    std::string name;    // field or task name
    std::string source;  // CSV column
    CategoricalOptions categorical = {};
    NumericOptions numeric = {};
    MultiCategoricalOptions multi = {};
    LabelOptions label = {};
    // Fitted.
    std::vector<std::string> vocabulary = {};
    std::unordered_map<std::string, std::int64_t> index = {};  // vocabulary entry -> id
    double mean = 0, std = 1;
    std::vector<double> boundaries = {};  // quantile buckets
  };

 private:
  FeatureSet& add(Column column);
  std::vector<Column> columns_;
  bool fitted_ = false;
};

}  // namespace ladon::data
