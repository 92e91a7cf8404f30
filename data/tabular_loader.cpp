#include "tabular_loader.h"

#include <algorithm>
#include <cstring>
#include <numeric>

namespace ladon::data {

namespace {

template <typename T>
Tensor gather_rows(const Tensor& src, const std::vector<std::int64_t>& rows) {
  Shape shape = src.shape();
  const std::int64_t width = src.size(0) == 0 ? 0 : src.numel() / src.size(0);
  shape[0] = static_cast<std::int64_t>(rows.size());
  Tensor out = empty(shape, src.dtype());
  const T* from = src.data<T>();
  T* to = out.data<T>();
  const std::size_t n = rows.size();
  if (width == 1) {
    // One id or label per row (the impression log's every column): a plain load instead of a
    // memcpy call each, and the shuffled rows' cache lines asked for a few rows ahead.
    constexpr std::size_t ahead = 16;
    for (std::size_t i = 0; i < n; ++i) {
      if (i + ahead < n) __builtin_prefetch(from + rows[i + ahead]);
      to[i] = from[rows[i]];
    }
    return out;
  }
  for (std::size_t i = 0; i < n; ++i)
    std::memcpy(to + static_cast<std::int64_t>(i) * width, from + rows[i] * width, sizeof(T) * static_cast<std::size_t>(width));
  return out;
}

}  // namespace

TabularDataset take_rows(const TabularDataset& dataset, const std::vector<std::int64_t>& rows) {
  for (std::int64_t r : rows)
    LADON_CHECK(r >= 0 && r < dataset.rows, "take_rows", "row ", r, " is out of range for ", dataset.rows, " rows");
  TabularDataset out;
  out.rows = static_cast<std::int64_t>(rows.size());
  out.task_names = dataset.task_names;
  for (const TabularDataset::Field& f : dataset.fields) {
    TabularDataset::Field g;
    g.spec = f.spec;
    if (f.offsets.defined()) {
      const Tensor ids = f.ids.contiguous(), offsets = f.offsets.contiguous();
      const std::int64_t* off = offsets.data<std::int64_t>();
      const std::int64_t* id = ids.data<std::int64_t>();
      std::vector<std::int64_t> bag_ids, starts = {0};
      for (std::int64_t r : rows) {
        bag_ids.insert(bag_ids.end(), id + off[r], id + off[r + 1]);
        starts.push_back(static_cast<std::int64_t>(bag_ids.size()));
      }
      g.ids = tensor(bag_ids, {static_cast<std::int64_t>(bag_ids.size())});
      g.offsets = tensor(starts, {out.rows + 1});
    } else if (f.values.defined()) {
      g.values = gather_rows<float>(f.values.contiguous(), rows);
    } else {
      g.ids = gather_rows<std::int64_t>(f.ids.contiguous(), rows);
    }
    out.fields.push_back(std::move(g));
  }
  for (std::size_t t = 0; t < dataset.labels.size(); ++t) {
    out.labels.push_back(gather_rows<float>(dataset.labels[t].contiguous(), rows));
    out.masks.push_back(gather_rows<float>(dataset.masks[t].contiguous(), rows));
  }
  return out;
}

TabularLoader::TabularLoader(const TabularDataset& dataset, LoaderOptions options)
    : dataset_(dataset), options_(options), gen_(options.seed) {
  const char* op = "TabularLoader";
  LADON_CHECK(options.batch > 0, op, "batch must be positive, got ", options.batch);
  const std::int64_t n = dataset.rows;
  for (TabularDataset::Field& f : dataset_.fields) {
    const std::int64_t rows = f.offsets.defined() ? f.offsets.numel() - 1 : f.values.defined() ? f.values.size(0) : f.ids.numel();
    LADON_CHECK(rows == n, op, "field '", f.spec.name, "' has ", rows, " rows, the dataset ", n);
    if (f.ids.defined()) f.ids = f.ids.detach().contiguous();
    if (f.offsets.defined()) f.offsets = f.offsets.detach().contiguous();
    if (f.values.defined()) f.values = f.values.detach().contiguous();
  }
  LADON_CHECK(dataset_.labels.size() == dataset_.masks.size(), op, dataset_.labels.size(), " labels but ",
              dataset_.masks.size(), " masks");
  for (std::size_t t = 0; t < dataset_.labels.size(); ++t) {
    LADON_CHECK(dataset_.labels[t].size(0) == n && dataset_.masks[t].size(0) == n, op, "task ", t, ": labels ",
                shape_str(dataset_.labels[t].shape()), " or mask ", shape_str(dataset_.masks[t].shape()),
                " do not have the dataset's ", n, " rows");
    dataset_.labels[t] = dataset_.labels[t].detach().contiguous();
    dataset_.masks[t] = dataset_.masks[t].detach().contiguous();
  }
}

std::int64_t TabularLoader::num_batches() const {
  const std::int64_t n = dataset_.rows;
  return options_.drop_last ? n / options_.batch : (n + options_.batch - 1) / options_.batch;
}

TabularBatch TabularLoader::gather(const std::vector<std::int64_t>& rows) const {
  for (std::int64_t r : rows)
    LADON_CHECK(r >= 0 && r < dataset_.rows, "TabularLoader", "row ", r, " is out of range for ", dataset_.rows, " rows");
  TabularBatch b;
  b.rows = static_cast<std::int64_t>(rows.size());
  for (const TabularDataset::Field& f : dataset_.fields) {
    nn::Feature out;
    if (f.offsets.defined()) {
      const std::int64_t* off = f.offsets.data<std::int64_t>();
      const std::int64_t* ids = f.ids.data<std::int64_t>();
      std::vector<std::int64_t> bag_ids, starts;
      starts.reserve(rows.size());
      for (std::int64_t r : rows) {
        starts.push_back(static_cast<std::int64_t>(bag_ids.size()));
        bag_ids.insert(bag_ids.end(), ids + off[r], ids + off[r + 1]);
      }
      out.ids = tensor(bag_ids, {static_cast<std::int64_t>(bag_ids.size())});
      out.offsets = tensor(starts, {b.rows});
    } else if (f.values.defined()) {
      out.values = gather_rows<float>(f.values, rows);
    } else {
      out.ids = gather_rows<std::int64_t>(f.ids, rows);
    }
    b.features.set(f.spec.name, std::move(out));
  }
  for (std::size_t t = 0; t < dataset_.labels.size(); ++t) {
    b.y.push_back(gather_rows<float>(dataset_.labels[t], rows));
    b.mask.push_back(gather_rows<float>(dataset_.masks[t], rows));
  }
  return b;
}

TabularLoader::Iterator TabularLoader::begin() {
  std::shared_ptr<const std::vector<std::int64_t>> order;
  if (options_.shuffle) order = std::make_shared<const std::vector<std::int64_t>>(randperm(dataset_.rows, gen_).to_vector<std::int64_t>());
  return Iterator(this, std::move(order), 0);
}

TabularLoader::Iterator TabularLoader::end() { return Iterator(this, nullptr, num_batches()); }

TabularLoader::Iterator::Iterator(const TabularLoader* loader, std::shared_ptr<const std::vector<std::int64_t>> order,
                                  std::int64_t index)
    : loader_(loader), order_(std::move(order)), index_(index) {
  load();
}

TabularLoader::Iterator& TabularLoader::Iterator::operator++() {
  ++index_;
  load();
  return *this;
}

void TabularLoader::Iterator::load() {
  if (loader_ == nullptr || index_ >= loader_->num_batches()) {
    current_ = TabularBatch{};
    return;
  }
  const std::int64_t begin = index_ * loader_->options_.batch;
  const std::int64_t end = std::min(begin + loader_->options_.batch, loader_->dataset_.rows);
  std::vector<std::int64_t> rows(static_cast<std::size_t>(end - begin));
  if (order_)
    std::copy(order_->begin() + begin, order_->begin() + end, rows.begin());
  else
    std::iota(rows.begin(), rows.end(), begin);
  current_ = loader_->gather(rows);
}

}  // namespace ladon::data
