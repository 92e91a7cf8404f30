#include "loader.h"

#include <algorithm>
#include <cstring>
#include <numeric>

namespace ladon::data {
namespace {

// Byte views of a tensor of either dtype: rows are copied as raw bytes.
const std::byte* raw_data(const Tensor& t) {
  return t.dtype() == Dtype::float32 ? reinterpret_cast<const std::byte*>(t.data<float>())
                                     : reinterpret_cast<const std::byte*>(t.data<std::int64_t>());
}
std::byte* raw_data(Tensor& t) {
  return t.dtype() == Dtype::float32 ? reinterpret_cast<std::byte*>(t.data<float>())
                                     : reinterpret_cast<std::byte*>(t.data<std::int64_t>());
}

// Copies rows [begin, end) of `order` (or the identity when order is null) out of the contiguous
// `src` into a fresh tensor.
Tensor gather_rows(const Tensor& src, const std::vector<std::int64_t>* order, std::int64_t begin, std::int64_t end) {
  Shape shape = src.shape();
  shape[0] = end - begin;
  Tensor out = empty(shape, src.dtype());
  const std::int64_t rows_in_src = src.size(0);
  const std::size_t row_bytes =
      static_cast<std::size_t>(rows_in_src == 0 ? 0 : src.numel() / rows_in_src) * dtype_size(src.dtype());
  if (row_bytes == 0 || end == begin) return out;
  const std::byte* from = raw_data(src);
  std::byte* to = raw_data(out);
  if (order == nullptr) {
    std::memcpy(to, from + static_cast<std::size_t>(begin) * row_bytes,
                static_cast<std::size_t>(end - begin) * row_bytes);
  } else {
    for (std::int64_t i = begin; i < end; ++i)
      std::memcpy(to + static_cast<std::size_t>(i - begin) * row_bytes,
                  from + static_cast<std::size_t>((*order)[static_cast<std::size_t>(i)]) * row_bytes, row_bytes);
  }
  return out;
}

}  // namespace

Loader::Loader(const Dataset& dataset, LoaderOptions options) : options_(options), gen_(options.seed) {
  LADON_CHECK(options.batch > 0, "Loader", "batch must be positive, got ", options.batch);
  check_dataset(dataset, "Loader");
  // detach: batches are data, and a gradient flowing back into a dataset would be a surprise.
  x_ = dataset.x.detach().contiguous();
  for (const Tensor& y : dataset.y) y_.push_back(y.detach().contiguous());
  rows_ = dataset.size();
}

std::int64_t Loader::num_batches() const {
  // Without forming rows + batch - 1, which overflows for a batch near INT64_MAX.
  const std::int64_t full = rows_ / options_.batch;
  return options_.drop_last || rows_ % options_.batch == 0 ? full : full + 1;
}

Loader::Iterator Loader::begin() { return begin_at(0); }

Loader::Iterator Loader::begin_at(std::int64_t first) {
  LADON_CHECK(first >= 0 && first <= num_batches(), "Loader::begin_at", "batch ", first, " is not in 0..",
              num_batches());
  std::shared_ptr<const std::vector<std::int64_t>> order;
  if (options_.shuffle) {
    // The generator advances with each epoch, so each begin() sees a new permutation.
    const Tensor perm = randperm(rows_, gen_);
    order = std::make_shared<const std::vector<std::int64_t>>(perm.to_vector<std::int64_t>());
  }
  return Iterator(this, std::move(order), first);
}

Loader::Iterator Loader::end() { return Iterator(this, nullptr, num_batches()); }

Loader::Iterator::Iterator(const Loader* loader, std::shared_ptr<const std::vector<std::int64_t>> order,
                           std::int64_t index)
    : loader_(loader), order_(std::move(order)), index_(index) {
  load();
}

Loader::Iterator& Loader::Iterator::operator++() {
  ++index_;
  load();
  return *this;
}

void Loader::Iterator::load() {
  if (loader_ == nullptr || index_ >= loader_->num_batches()) {
    current_ = Batch{};
    return;
  }
  const std::int64_t begin = index_ * loader_->options_.batch;
  const std::int64_t end = begin + std::min(loader_->options_.batch, loader_->rows_ - begin);
  const std::vector<std::int64_t>* order = order_.get();
  current_.x = gather_rows(loader_->x_, order, begin, end);
  current_.y.clear();
  for (const Tensor& y : loader_->y_) current_.y.push_back(gather_rows(y, order, begin, end));
}

}  // namespace ladon::data
