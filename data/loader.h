// Loader: iterates a Dataset in mini-batches, optionally shuffled.
//
//   for (auto& batch : data::Loader(ds, {.batch = 256, .shuffle = true, .seed = 1})) { ... }
//
// Each batch holds fresh copies of its rows (never views of the dataset). With shuffle, every
// begin() starts a new epoch with a new permutation drawn from a generator seeded once with
// `seed`: epochs differ from each other, and two loaders with the same seed yield the same
// sequence of epochs. Iterators refer to their Loader, which must outlive them (a range-for over
// a temporary Loader is fine: the temporary lives until the loop ends).
#pragma once

#include "layer_fence.h"

#include <cstdint>
#include <iterator>
#include <memory>
#include <vector>

#include "../core/random.h"
#include "dataset.h"

namespace ladon::data {

struct LoaderOptions {
  std::int64_t batch = 64;
  bool shuffle = false;
  bool drop_last = false;  // drop a final batch smaller than `batch`
  std::uint64_t seed = 0;
};

struct Batch {
  Tensor x;               // rows of dataset.x, same dtype, first dim = batch rows
  std::vector<Tensor> y;  // one per task, rows matching x
};

class Loader {
 public:
  // Keeps handles to the dataset's tensors (made contiguous), so the dataset object itself may go
  // out of scope. Throws ladon::Error when batch <= 0 or x and y disagree in row count.
  Loader(const Dataset& dataset, LoaderOptions options = {});

  class Iterator {
   public:
    using iterator_category = std::input_iterator_tag;
    using value_type = Batch;
    using difference_type = std::ptrdiff_t;
    using pointer = Batch*;
    using reference = Batch&;

    Iterator() = default;
    // The batch is built once per step and owned by the iterator; a mutable reference lets a user
    // move tensors out of it.
    Batch& operator*() const { return current_; }
    Batch* operator->() const { return &current_; }
    Iterator& operator++();
    void operator++(int) { ++*this; }
    bool operator==(const Iterator& other) const { return index_ == other.index_; }

   private:
    friend class Loader;
    Iterator(const Loader* loader, std::shared_ptr<const std::vector<std::int64_t>> order, std::int64_t index);
    void load();

    const Loader* loader_ = nullptr;
    std::shared_ptr<const std::vector<std::int64_t>> order_;  // this epoch's row order; null = in order
    std::int64_t index_ = 0;                                  // batch number
    mutable Batch current_;
  };

  Iterator begin();  // starts an epoch (reshuffles when shuffle is on)
  Iterator end();
  std::int64_t num_batches() const;
  std::int64_t size() const { return rows_; }  // rows in the dataset
  const LoaderOptions& options() const { return options_; }

 private:
  Tensor x_;
  std::vector<Tensor> y_;
  std::int64_t rows_ = 0;
  LoaderOptions options_;
  Generator gen_;
};

}  // namespace ladon::data
