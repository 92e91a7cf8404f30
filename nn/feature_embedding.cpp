#include "feature_embedding.h"

#include <set>

#include "../core/autograd.h"
#include "../core/ops.h"

namespace ladon::nn {

const char* field_kind_name(FieldKind kind) {
  switch (kind) {
    case FieldKind::categorical: return "categorical";
    case FieldKind::multi_categorical: return "multi_categorical";
    case FieldKind::numeric: return "numeric";
  }
  return "?";
}

void Features::set(const std::string& name, Feature feature) {
  for (auto& [n, f] : items_)
    if (n == name) {
      f = std::move(feature);
      return;
    }
  items_.emplace_back(name, std::move(feature));
}

bool Features::contains(const std::string& name) const {
  for (const auto& item : items_)
    if (item.first == name) return true;
  return false;
}

const Feature& Features::at(const std::string& name) const {
  for (const auto& [n, f] : items_)
    if (n == name) return f;
  std::string all;
  for (const auto& item : items_) all += (all.empty() ? "" : ", ") + item.first;
  detail::fail("Features", "no field '", name, "' (fields: ", all.empty() ? "none" : all, ")");
}

std::int64_t Features::rows() const {
  if (items_.empty()) return 0;
  const Feature& f = items_.front().second;
  if (f.offsets.defined()) return f.offsets.numel();
  if (f.values.defined()) return f.values.size(0);
  return f.ids.defined() ? f.ids.numel() : 0;
}

FeatureEmbedding::FeatureEmbedding(FeatureEmbeddingOptions options, Generator& gen) : options_(std::move(options)) {
  const char* op = "FeatureEmbedding";
  LADON_CHECK(!options_.fields.empty(), op, "no fields");
  std::set<std::string> names;
  for (const FieldSpec& f : options_.fields) {
    LADON_CHECK(!f.name.empty() && f.name.find('.') == std::string::npos, op, "field name '", f.name,
                "' must be non-empty without '.' (it becomes part of a parameter name)");
    LADON_CHECK(names.insert(f.name).second, op, "field '", f.name, "' appears twice");
  }
  for (const auto& [name, dim] : options_.dims) {
    LADON_CHECK(names.count(name) == 1, op, "dims names field '", name, "', which is not among the fields");
    LADON_CHECK(dim > 0, op, "field '", name, "': dim must be positive, got ", dim);
  }
  LADON_CHECK(options_.dim > 0, op, "dim must be positive, got ", options_.dim);
  for (const FieldSpec& f : options_.fields) {
    single_.emplace_back();
    bags_.emplace_back();
    if (f.kind == FieldKind::numeric) {
      LADON_CHECK(f.width > 0, op, "numeric field '", f.name, "': width must be positive, got ", f.width);
      out_dim_ += f.width;
      continue;
    }
    LADON_CHECK(f.cardinality > 0, op, field_kind_name(f.kind), " field '", f.name,
                "': cardinality must be positive, got ", f.cardinality);
    const auto it = options_.dims.find(f.name);
    const std::int64_t dim = it == options_.dims.end() ? options_.dim : it->second;
    if (f.kind == FieldKind::categorical)
      single_.back() = std::make_unique<Embedding>(f.cardinality, dim, EmbeddingOptions{.sparse = options_.sparse}, gen);
    else
      bags_.back() = std::make_unique<EmbeddingBag>(
          f.cardinality, dim, EmbeddingBagOptions{.mode = options_.bag_mode, .sparse = options_.sparse}, gen);
    // N(0, 1) suits a table looked up alone; feeding a trunk, smaller rows train more evenly.
    NoGradGuard no_grad;
    Tensor& w = f.kind == FieldKind::categorical ? single_.back()->weight : bags_.back()->weight;
    float* p = w.data<float>();
    for (std::int64_t i = 0; i < w.numel(); ++i) p[i] *= 0.05f;
    out_dim_ += dim;
  }
}

void FeatureEmbedding::visit(Visitor& v) {
  for (std::size_t i = 0; i < options_.fields.size(); ++i) {
    if (single_[i]) v("tables." + options_.fields[i].name, *single_[i]);
    if (bags_[i]) v("tables." + options_.fields[i].name, *bags_[i]);
  }
}

Tensor& FeatureEmbedding::table(const std::string& field) {
  for (std::size_t i = 0; i < options_.fields.size(); ++i)
    if (options_.fields[i].name == field) {
      if (single_[i]) return single_[i]->weight;
      if (bags_[i]) return bags_[i]->weight;
    }
  detail::fail("FeatureEmbedding", "no categorical field '", field, "'");
}

Tensor FeatureEmbedding::forward(const Features& features) {
  const char* op = "FeatureEmbedding";
  std::vector<Tensor> parts;
  std::int64_t rows = -1;
  auto check_rows = [&](const FieldSpec& f, std::int64_t n) {
    if (rows < 0) rows = n;
    LADON_CHECK(n == rows, op, "field '", f.name, "' has ", n, " rows, the fields before it ", rows);
  };
  for (std::size_t i = 0; i < options_.fields.size(); ++i) {
    const FieldSpec& spec = options_.fields[i];
    const Feature& f = features.at(spec.name);
    if (spec.kind == FieldKind::numeric) {
      LADON_CHECK(f.values.defined() && f.values.dtype() == Dtype::float32 && f.values.dim() == 2 &&
                      f.values.size(1) == spec.width,
                  op, "numeric field '", spec.name, "' needs float32 values [B, ", spec.width, "]",
                  f.values.defined() ? ", got " + shape_str(f.values.shape()) : std::string(", got none"));
      check_rows(spec, f.values.size(0));
      parts.push_back(f.values);
      continue;
    }
    LADON_CHECK(f.ids.defined() && f.ids.dtype() == Dtype::int64 && f.ids.dim() == 1, op, field_kind_name(spec.kind),
                " field '", spec.name, "' needs 1-D int64 ids",
                f.ids.defined() ? ", got " + shape_str(f.ids.shape()) : std::string(", got none"));
    try {
      if (spec.kind == FieldKind::categorical) {
        check_rows(spec, f.ids.numel());
        parts.push_back((*single_[i])(f.ids));
      } else {
        LADON_CHECK(f.offsets.defined(), op, "multi-valued field '", spec.name, "' needs offsets");
        check_rows(spec, f.offsets.numel());
        parts.push_back((*bags_[i])(f.ids, f.offsets));
      }
    } catch (const Error& e) {
      detail::fail(op, "field '", spec.name, "': ", e.what());
    }
  }
  return parts.size() == 1 ? parts[0] : cat(parts, 1);
}

}  // namespace ladon::nn
