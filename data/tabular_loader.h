// TabularLoader: mini-batches of a TabularDataset, every field, label and mask shuffled together.
//
//   for (auto& batch : data::TabularLoader(train, {.batch = 512, .shuffle = true, .seed = 1})) {
//     auto out = model(batch.features);                       // nn::Features by field name
//     loss_t = bce_with_logits(out[t], batch.y[t], {.weight = batch.mask[t]});
//   }
//
// Same options and epoch semantics as Loader (loader.h): each begin() with shuffle draws a new
// permutation from a generator seeded once. A multi-valued field's batch has the bag ids of the
// batch's rows concatenated and `offsets` [B] giving each row's start, as embedding_bag takes them.
#pragma once

#include "layer_fence.h"

#include <cstdint>
#include <iterator>
#include <memory>
#include <vector>

#include "../core/random.h"
#include "../nn/feature_embedding.h"
#include "feature_set.h"
#include "loader.h"

namespace ladon::data {

struct TabularBatch {
  nn::Features features;
  std::vector<Tensor> y;     // float32 [B, 1] per task
  std::vector<Tensor> mask;  // float32 [B, 1] per task
  std::int64_t rows = 0;
};

class TabularLoader {
 public:
  // Keeps handles to the dataset's tensors. Throws on batch <= 0 or fields whose rows disagree.
  TabularLoader(const TabularDataset& dataset, LoaderOptions options = {});

  class Iterator {
   public:
    using iterator_category = std::input_iterator_tag;
    using value_type = TabularBatch;
    using difference_type = std::ptrdiff_t;
    using pointer = TabularBatch*;
    using reference = TabularBatch&;

    Iterator() = default;
    TabularBatch& operator*() const { return current_; }
    TabularBatch* operator->() const { return &current_; }
    Iterator& operator++();
    void operator++(int) { ++*this; }
    bool operator==(const Iterator& other) const { return index_ == other.index_; }

   private:
    friend class TabularLoader;
    Iterator(const TabularLoader* loader, std::shared_ptr<const std::vector<std::int64_t>> order, std::int64_t index);
    void load();

    const TabularLoader* loader_ = nullptr;
    std::shared_ptr<const std::vector<std::int64_t>> order_;
    std::int64_t index_ = 0;
    mutable TabularBatch current_;
  };

  Iterator begin();
  Iterator end();
  std::int64_t num_batches() const;
  std::int64_t size() const { return dataset_.rows; }

  // Rows `rows` (in that order) of the dataset as one batch: what each iteration step yields.
  TabularBatch gather(const std::vector<std::int64_t>& rows) const;

 private:
  TabularDataset dataset_;
  LoaderOptions options_;
  Generator gen_;
};

// The rows `rows` of a dataset (in that order, repeats allowed) as a dataset of their own: a
// validation split carved from training rows, or the clicked rows of a log. Throws naming the
// first row out of range.
TabularDataset take_rows(const TabularDataset& dataset, const std::vector<std::int64_t>& rows);

}  // namespace ladon::data
