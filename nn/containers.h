// ModuleList and ModuleDict: hold any number of child modules (of any Module type) and name them for
// parameters(), train()/eval() and state dicts. Unlike Sequential they have no forward: the owner
// decides how to call the children. Like Sequential they own children through pointers, so they are
// move-only, and references returned by push_back / insert stay valid as more are added.
//
//   nn::ModuleList blocks;                          // children "0", "1", ...
//   for (int i = 0; i < 3; ++i) blocks.push_back(nn::Linear(8, 8));
//   nn::ModuleDict heads;                           // children named by key, in insertion order
//   heads.insert("item", nn::Linear(8, 10));
//   Tensor y = heads.at<nn::Linear>("item")(x);
#pragma once

#include "layer_fence.h"

#include <memory>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "module.h"

namespace ladon::nn {

class ModuleList : public Module {
 public:
  ModuleList() = default;
  template <typename... Modules>
  explicit ModuleList(Modules&&... modules) {
    (push_back(std::forward<Modules>(modules)), ...);
  }
  ModuleList(ModuleList&&) = default;
  ModuleList& operator=(ModuleList&&) = default;

  template <typename M>
  std::decay_t<M>& push_back(M&& module) {
    auto owned = std::make_unique<std::decay_t<M>>(std::forward<M>(module));
    std::decay_t<M>& ref = *owned;
    modules_.push_back(std::move(owned));
    return ref;
  }
  void push_back(std::unique_ptr<Module> module) {
    LADON_CHECK(module != nullptr, "ModuleList", "cannot hold a null module");
    modules_.push_back(std::move(module));
  }

  std::size_t size() const { return modules_.size(); }
  bool empty() const { return modules_.empty(); }
  Module& operator[](std::size_t i) {
    LADON_CHECK(i < modules_.size(), "ModuleList", "index ", i, " is out of range for ", modules_.size(), " modules");
    return *modules_[i];
  }
  // The i-th child as its concrete type; throws when it is not an M.
  template <typename M>
  M& at(std::size_t i) {
    auto* m = dynamic_cast<M*>(&(*this)[i]);
    LADON_CHECK(m != nullptr, "ModuleList", "module ", i, " is not of the requested type");
    return *m;
  }
  // Iterates over the owning pointers: for (auto& m : list) m->train(false);
  auto begin() { return modules_.begin(); }
  auto end() { return modules_.end(); }

  void visit(Visitor& v) override {
    for (std::size_t i = 0; i < modules_.size(); ++i) v(std::to_string(i), *modules_[i]);
  }

 private:
  std::vector<std::unique_ptr<Module>> modules_;
};

class ModuleDict : public Module {
 public:
  ModuleDict() = default;
  ModuleDict(ModuleDict&&) = default;
  ModuleDict& operator=(ModuleDict&&) = default;

  // Adds a child under a new key (non-empty, no '.', since dots separate parameter names).
  template <typename M>
  std::decay_t<M>& insert(const std::string& key, M&& module) {
    auto owned = std::make_unique<std::decay_t<M>>(std::forward<M>(module));
    std::decay_t<M>& ref = *owned;
    insert(key, std::unique_ptr<Module>(std::move(owned)));
    return ref;
  }
  void insert(const std::string& key, std::unique_ptr<Module> module) {
    LADON_CHECK(module != nullptr, "ModuleDict", "cannot hold a null module");
    LADON_CHECK(!key.empty() && key.find('.') == std::string::npos, "ModuleDict", "key '", key,
                "' must be non-empty and contain no '.'");
    LADON_CHECK(!contains(key), "ModuleDict", "key '", key, "' is already present");
    entries_.emplace_back(key, std::move(module));
  }

  std::size_t size() const { return entries_.size(); }
  bool empty() const { return entries_.empty(); }
  bool contains(const std::string& key) const {
    for (const auto& entry : entries_)
      if (entry.first == key) return true;
    return false;
  }
  std::vector<std::string> keys() const {  // in insertion order
    std::vector<std::string> out;
    for (const auto& entry : entries_) out.push_back(entry.first);
    return out;
  }
  Module& operator[](const std::string& key) {
    for (auto& entry : entries_)
      if (entry.first == key) return *entry.second;
    std::string known;
    for (const auto& entry : entries_) known += (known.empty() ? "" : ", ") + entry.first;
    ::ladon::detail::fail("ModuleDict", "no module named '", key, "' (keys: ", known.empty() ? "none" : known, ")");
  }
  template <typename M>
  M& at(const std::string& key) {
    auto* m = dynamic_cast<M*>(&(*this)[key]);
    LADON_CHECK(m != nullptr, "ModuleDict", "module '", key, "' is not of the requested type");
    return *m;
  }

  void visit(Visitor& v) override {
    for (auto& [key, module] : entries_) v(key, *module);
  }

 private:
  std::vector<std::pair<std::string, std::unique_ptr<Module>>> entries_;
};

}  // namespace ladon::nn
