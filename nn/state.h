// Saved state: an ordered dictionary of tensors, numbers and strings (StateDict), the Stateful
// interface that optimizers, schedulers and early stopping implement, and the functions that copy a
// Module's parameters and buffers out to a StateDict and back by dotted name. Checkpoints
// (checkpoint.h) write StateDicts to disk.
//
//   nn::StateDict snapshot = nn::module_state(model);       // copies, by dotted name
//   ... train ...
//   nn::load_module_state(model, snapshot);                  // checks everything, then writes
#pragma once

#include "layer_fence.h"

#include <concepts>
#include <cstdint>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include "../core/random.h"
#include "../core/tensor.h"
#include "module.h"

namespace ladon::nn {

// One value of a StateDict. Integers stay integers (step counts, epochs); everything a file can hold.
using StateValue = std::variant<Tensor, double, std::int64_t, std::string>;
const char* state_kind_name(const StateValue& value);  // "tensor", "number", "integer", "string"

// Keys keep their insertion order (so a file lists tensors in model order); setting an existing key
// replaces its value in place. Getters throw ladon::Error naming `op`, the key and what was found.
class StateDict {
 public:
  void set(const std::string& key, StateValue value);
  void set(const std::string& key, const char* value) { set(key, StateValue(std::string(value))); }
  template <std::integral I>
  void set(const std::string& key, I value) {
    set(key, StateValue(static_cast<std::int64_t>(value)));
  }
  void set(const std::string& key, double value) { set(key, StateValue(value)); }
  void set(const std::string& key, float value) { set(key, StateValue(static_cast<double>(value))); }

  bool contains(const std::string& key) const { return find(key) != nullptr; }
  const StateValue* find(const std::string& key) const;  // null when absent
  bool erase(const std::string& key);

  const Tensor& tensor(const std::string& key, const char* op = "StateDict") const;
  double number(const std::string& key, const char* op = "StateDict") const;  // a number or an integer
  std::int64_t integer(const std::string& key, const char* op = "StateDict") const;
  const std::string& string(const std::string& key, const char* op = "StateDict") const;

  const std::vector<std::pair<std::string, StateValue>>& items() const { return items_; }
  std::vector<std::string> keys() const;
  std::size_t size() const { return items_.size(); }
  bool empty() const { return items_.empty(); }

 private:
  const StateValue& at(const std::string& key, const char* op) const;
  std::vector<std::pair<std::string, StateValue>> items_;
};

// The same state: equal keys in equal order, equal kinds, and identical values. Tensors (same shape
// and dtype) and numbers compare by their bits, so a NaN equals the same NaN (a model holding NaN
// still equals its snapshot) and 0.0 differs from -0.0.
bool operator==(const StateDict& a, const StateDict& b);

// Something whose state can be saved and restored: optimizers, schedulers, early stopping.
// load_state_dict either succeeds or throws having changed nothing; check_state_dict runs the same
// validation without applying, so a checkpoint can validate every part before touching any.
class Stateful {
 public:
  virtual ~Stateful() = default;
  virtual StateDict state_dict() const = 0;
  virtual void check_state_dict(const StateDict& state) const = 0;
  virtual void load_state_dict(const StateDict& state) = 0;
};

// A random stream's position under `key` (key.0 .. key.3, key.spare, key.has_spare), and back:
// restoring it continues the stream exactly where it was saved.
void save_generator(StateDict& state, const std::string& key, const Generator& gen);
Generator::State generator_state(const StateDict& state, const std::string& key, const char* op);
// The entries of `inner` copied into `outer` under "prefix.", and back (a part's state inside a
// larger one: a balancer's own optimizer, say).
void save_nested(StateDict& outer, const std::string& prefix, const StateDict& inner);
StateDict nested(const StateDict& outer, const std::string& prefix);

// Every parameter and buffer of `model` by dotted name, in visit() order. With copy (the default)
// the tensors are fresh contiguous copies, a snapshot that later training does not change; without,
// they are detached handles sharing the model's storage (cheap, for writing straight to a file).
// Throws when two tensors share one name.
StateDict module_state(Module& model, bool copy = true);

// Every random stream of `model` (Module::named_generators) under "<dotted name>.<key>", and back:
// loading checks that the same streams are there before changing any. check_random_state makes
// the same checks without changing anything.
StateDict random_state(Module& model);
void load_random_state(Module& model, const StateDict& state);
void check_random_state(Module& model, const StateDict& state);

struct LoadReport {
  std::vector<std::string> missing;     // in the model, not in the state (left unchanged)
  std::vector<std::string> unexpected;  // in the state, not in the model (ignored)
};

// Copies `state` into the model's parameters and buffers in place (so optimizers keep pointing at
// the same tensors). Everything is checked before anything is written: a dtype or shape mismatch,
// or a non-tensor value, always throws, naming the tensor and both shapes; with strict (the
// default) a missing or unexpected key throws too, listing them all. Returns the keys that did not
// match (empty lists when strict).
LoadReport load_module_state(Module& model, const StateDict& state, bool strict = true);
// The same checks without writing; returns what load_module_state would.
LoadReport check_module_state(Module& model, const StateDict& state, bool strict = true);

}  // namespace ladon::nn
