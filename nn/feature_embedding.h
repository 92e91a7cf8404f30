// Named input features of tabular / recommendation data, and the feature-embedding front that turns
// them into one dense input row per sample.
//
//   nn::FeatureEmbedding front({.fields = feature_set.fields(), .dim = 8});
//   Tensor x = front(batch.features);   // [B, front.out_dim()]: embeddings, then numeric values
//
// A categorical field carries one int64 id per row; a multi-valued one a bag of ids per row
// (1-D ids with bag starts in `offsets`, as embedding_bag takes them); a numeric field float32
// values [B, width]. The front has one table per categorical field (named "tables.<field>.weight")
// and concatenates, in field order, each field's embedding (bags pooled by sum or mean) and the
// numeric values.
#pragma once

#include "layer_fence.h"

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "../core/tensor.h"
#include "embedding.h"
#include "module.h"

namespace ladon::nn {

enum class FieldKind { categorical, multi_categorical, numeric };
const char* field_kind_name(FieldKind kind);

struct Feature {
  Tensor ids;      // int64: [B] for categorical, [total] for multi-valued
  Tensor offsets;  // int64 [B]: where each row's bag starts in ids (multi-valued only)
  Tensor values;   // float32 [B, width] (numeric only)
};

// Features by field name, in insertion order.
class Features {
 public:
  void set(const std::string& name, Feature feature);
  // Throws ladon::Error naming the field and listing those present.
  const Feature& at(const std::string& name) const;
  bool contains(const std::string& name) const;
  const std::vector<std::pair<std::string, Feature>>& items() const { return items_; }
  std::int64_t rows() const;  // batch rows (0 when empty)

 private:
  std::vector<std::pair<std::string, Feature>> items_;
};

// What the front needs to know about one field.
struct FieldSpec {
  std::string name;
  FieldKind kind = FieldKind::categorical;
  std::int64_t cardinality = 0;  // categorical / multi-valued: ids are in [0, cardinality)
  std::int64_t width = 1;        // numeric: values per row
};

struct FeatureEmbeddingOptions {
  std::vector<FieldSpec> fields = {};
  std::int64_t dim = 8;                     // embedding width of every categorical field...
  std::map<std::string, std::int64_t> dims = {};  // ...unless named here
  BagMode bag_mode = BagMode::mean;         // pooling of multi-valued fields
  bool sparse = false;                       // row-sparse table gradients (EmbeddingOptions::sparse)
};

class FeatureEmbedding : public Module {
 public:
  // Throws on no fields, a repeated name, a name with '.', a categorical field without a
  // positive cardinality, a numeric one without a positive width, or a dim <= 0.
  explicit FeatureEmbedding(FeatureEmbeddingOptions options, Generator& gen = default_generator());
  // Throws naming the field when it is absent from `features`, has the wrong dtype or shape, or
  // an id out of range; every field must have the same number of rows.
  Tensor forward(const Features& features);
  Tensor operator()(const Features& features) { return forward(features); }
  void visit(Visitor& v) override;

  std::int64_t out_dim() const { return out_dim_; }
  const std::vector<FieldSpec>& fields() const { return options_.fields; }
  // The table of a categorical or multi-valued field; throws for any other name.
  Tensor& table(const std::string& field);

 private:
  FeatureEmbeddingOptions options_;
  std::vector<std::unique_ptr<Embedding>> single_;   // per field, null unless categorical
  std::vector<std::unique_ptr<EmbeddingBag>> bags_;  // per field, null unless multi-valued
  std::int64_t out_dim_ = 0;
};

}  // namespace ladon::nn
