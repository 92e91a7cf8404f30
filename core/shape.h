// Shape: the sizes (or strides) of a tensor's dims. It behaves like std::vector<std::int64_t> and
// converts to and from one, but keeps up to six dims inline: every tensor and view holds two of
// these, and as heap vectors they were half of all allocations in a small model's training step.
#pragma once

#include "layer_fence.h"

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <iterator>
#include <vector>

namespace ladon {

class Shape {
 public:
  using value_type = std::int64_t;
  using size_type = std::size_t;
  using iterator = std::int64_t*;
  using const_iterator = const std::int64_t*;
  using reference = std::int64_t&;
  using const_reference = const std::int64_t&;

  Shape() = default;
  Shape(std::initializer_list<std::int64_t> values) { assign(values.begin(), values.end()); }
  explicit Shape(size_type count, std::int64_t value = 0) { resize(count, value); }
  template <std::input_iterator It>
  Shape(It first, It last) {
    assign(first, last);
  }
  Shape(const std::vector<std::int64_t>& values) { assign(values.begin(), values.end()); }  // NOLINT: implicit
  operator std::vector<std::int64_t>() const { return {begin(), end()}; }                     // NOLINT: implicit

  Shape(const Shape& other) { assign(other.begin(), other.end()); }
  Shape(Shape&& other) noexcept { take(other); }
  Shape& operator=(const Shape& other) {
    if (this != &other) assign(other.begin(), other.end());
    return *this;
  }
  Shape& operator=(Shape&& other) noexcept {
    if (this != &other) {
      release();
      take(other);
    }
    return *this;
  }
  ~Shape() { release(); }

  size_type size() const { return size_; }
  bool empty() const { return size_ == 0; }
  std::int64_t* data() { return data_; }
  const std::int64_t* data() const { return data_; }
  iterator begin() { return data_; }
  iterator end() { return data_ + size_; }
  const_iterator begin() const { return data_; }
  const_iterator end() const { return data_ + size_; }
  std::int64_t& operator[](size_type i) { return data_[i]; }
  const std::int64_t& operator[](size_type i) const { return data_[i]; }
  std::int64_t& front() { return data_[0]; }
  const std::int64_t& front() const { return data_[0]; }
  std::int64_t& back() { return data_[size_ - 1]; }
  const std::int64_t& back() const { return data_[size_ - 1]; }

  void reserve(size_type capacity) {
    if (capacity <= capacity_) return;
    auto* grown = new std::int64_t[capacity];
    std::copy(begin(), end(), grown);
    if (data_ != inline_) delete[] data_;
    data_ = grown;
    capacity_ = capacity;
  }
  void resize(size_type count, std::int64_t value = 0) {
    reserve(count);
    for (size_type i = size_; i < count; ++i) data_[i] = value;
    size_ = count;
  }
  void clear() { size_ = 0; }
  void push_back(std::int64_t value) {
    if (size_ == capacity_) reserve(capacity_ * 2);
    data_[size_++] = value;
  }
  void pop_back() { --size_; }
  iterator insert(const_iterator pos, std::int64_t value) {
    const auto at = static_cast<size_type>(pos - data_);
    push_back(value);
    std::rotate(data_ + at, data_ + size_ - 1, data_ + size_);
    return data_ + at;
  }
  // [first, last) must not point into this Shape (push_back may move its elements).
  template <std::input_iterator It>
  iterator insert(const_iterator pos, It first, It last) {
    const auto at = static_cast<size_type>(pos - data_);
    const size_type old_size = size_;
    for (; first != last; ++first) push_back(*first);
    std::rotate(data_ + at, data_ + old_size, data_ + size_);
    return data_ + at;
  }
  iterator erase(const_iterator pos) { return erase(pos, pos + 1); }
  iterator erase(const_iterator first, const_iterator last) {
    const auto from = static_cast<size_type>(first - data_), to = static_cast<size_type>(last - data_);
    std::copy(data_ + to, data_ + size_, data_ + from);
    size_ -= to - from;
    return data_ + from;
  }
  template <std::input_iterator It>
  void assign(It first, It last) {
    const auto count = static_cast<size_type>(std::distance(first, last));
    size_ = 0;
    reserve(count);
    std::copy(first, last, data_);
    size_ = count;
  }

  friend bool operator==(const Shape& a, const Shape& b) { return std::equal(a.begin(), a.end(), b.begin(), b.end()); }

 private:
  static constexpr size_type kInline = 6;

  void release() {
    if (data_ != inline_) delete[] data_;
    data_ = inline_;
    size_ = 0;
    capacity_ = kInline;
  }
  // Moves other's contents here (this holds nothing) and leaves other empty.
  void take(Shape& other) {
    if (other.data_ == other.inline_) {
      std::copy(other.begin(), other.end(), inline_);
      data_ = inline_;
    } else {
      data_ = other.data_;
      other.data_ = other.inline_;
    }
    size_ = other.size_;
    capacity_ = other.capacity_;
    other.size_ = 0;
    other.capacity_ = kInline;
  }

  std::int64_t inline_[kInline] = {};
  std::int64_t* data_ = inline_;
  size_type size_ = 0;
  size_type capacity_ = kInline;
};

}  // namespace ladon
