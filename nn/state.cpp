#include "state.h"

#include <algorithm>
#include <bit>
#include <cstring>
#include <map>
#include <sstream>

#include "../core/autograd.h"
#include "../core/ops.h"

namespace ladon::nn {

const char* state_kind_name(const StateValue& value) {
  switch (value.index()) {
    case 0:
      return "tensor";
    case 1:
      return "number";
    case 2:
      return "integer";
    default:
      return "string";
  }
}

// ---- StateDict ----------------------------------------------------------------------------------

void StateDict::set(const std::string& key, StateValue value) {
  for (auto& [k, v] : items_)
    if (k == key) {
      v = std::move(value);
      return;
    }
  items_.emplace_back(key, std::move(value));
}

const StateValue* StateDict::find(const std::string& key) const {
  for (const auto& [k, v] : items_)
    if (k == key) return &v;
  return nullptr;
}

bool StateDict::erase(const std::string& key) {
  const auto it = std::find_if(items_.begin(), items_.end(), [&](const auto& kv) { return kv.first == key; });
  if (it == items_.end()) return false;
  items_.erase(it);
  return true;
}

std::vector<std::string> StateDict::keys() const {
  std::vector<std::string> out;
  out.reserve(items_.size());
  for (const auto& kv : items_) out.push_back(kv.first);
  return out;
}

const StateValue& StateDict::at(const std::string& key, const char* op) const {
  const StateValue* v = find(key);
  LADON_CHECK(v != nullptr, op, "no entry '", key, "'");
  return *v;
}

const Tensor& StateDict::tensor(const std::string& key, const char* op) const {
  const StateValue& v = at(key, op);
  LADON_CHECK(std::holds_alternative<Tensor>(v), op, "entry '", key, "' is a ", state_kind_name(v), ", not a tensor");
  return std::get<Tensor>(v);
}

double StateDict::number(const std::string& key, const char* op) const {
  const StateValue& v = at(key, op);
  if (const auto* d = std::get_if<double>(&v)) return *d;
  if (const auto* i = std::get_if<std::int64_t>(&v)) return static_cast<double>(*i);
  ::ladon::detail::fail(op, "entry '", key, "' is a ", state_kind_name(v), ", not a number");
}

std::int64_t StateDict::integer(const std::string& key, const char* op) const {
  const StateValue& v = at(key, op);
  LADON_CHECK(std::holds_alternative<std::int64_t>(v), op, "entry '", key, "' is a ", state_kind_name(v),
              ", not an integer");
  return std::get<std::int64_t>(v);
}

const std::string& StateDict::string(const std::string& key, const char* op) const {
  const StateValue& v = at(key, op);
  LADON_CHECK(std::holds_alternative<std::string>(v), op, "entry '", key, "' is a ", state_kind_name(v),
              ", not a string");
  return std::get<std::string>(v);
}

namespace {

// Same shape, dtype and bytes: the identity of saved state, under which a NaN equals itself.
bool same_bits(const Tensor& a, const Tensor& b) {
  if (a.defined() != b.defined()) return false;
  if (!a.defined()) return true;
  if (a.shape() != b.shape() || a.dtype() != b.dtype()) return false;
  if (a.numel() == 0) return true;
  const Tensor ca = a.contiguous(), cb = b.contiguous();
  const auto bytes = static_cast<std::size_t>(ca.numel()) * dtype_size(ca.dtype());
  if (ca.dtype() == Dtype::float32) return std::memcmp(ca.data<float>(), cb.data<float>(), bytes) == 0;
  return std::memcmp(ca.data<std::int64_t>(), cb.data<std::int64_t>(), bytes) == 0;
}

}  // namespace

bool operator==(const StateDict& a, const StateDict& b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    const auto& [ka, va] = a.items()[i];
    const auto& [kb, vb] = b.items()[i];
    if (ka != kb || va.index() != vb.index()) return false;
    if (const auto* t = std::get_if<Tensor>(&va)) {
      if (!same_bits(*t, std::get<Tensor>(vb))) return false;
    } else if (const auto* x = std::get_if<double>(&va)) {
      if (std::bit_cast<std::uint64_t>(*x) != std::bit_cast<std::uint64_t>(std::get<double>(vb))) return false;
    } else if (const auto* i = std::get_if<std::int64_t>(&va)) {
      if (*i != std::get<std::int64_t>(vb)) return false;
    } else if (std::get<std::string>(va) != std::get<std::string>(vb)) {
      return false;
    }
  }
  return true;
}

// ---- Module state -------------------------------------------------------------------------------

namespace {

std::vector<std::pair<std::string, Tensor>> module_tensors(Module& model, const char* op) {
  std::vector<std::pair<std::string, Tensor>> all = model.named_parameters();
  for (auto& kv : model.named_buffers()) all.push_back(std::move(kv));
  std::map<std::string, std::size_t> seen;
  for (std::size_t i = 0; i < all.size(); ++i) {
    LADON_CHECK(all[i].second.defined(), op, "model tensor '", all[i].first, "' is undefined");
    LADON_CHECK(seen.emplace(all[i].first, i).second, op, "the model names two tensors '", all[i].first,
                "' (check its visit())");
  }
  return all;
}

std::string join(const std::vector<std::string>& names) {
  std::string out;
  for (const std::string& n : names) out += (out.empty() ? "" : ", ") + n;
  return out;
}

}  // namespace

StateDict module_state(Module& model, bool copy) {
  NoGradGuard no_grad;
  StateDict out;
  for (auto& [name, t] : module_tensors(model, "module_state")) out.set(name, copy ? t.detach().clone() : t.detach());
  return out;
}

LoadReport check_module_state(Module& model, const StateDict& state, bool strict) {
  const char* op = "load_module_state";
  const auto tensors = module_tensors(model, op);
  LoadReport report;
  std::map<std::string, const Tensor*> in_model;
  for (const auto& [name, t] : tensors) in_model.emplace(name, &t);
  for (const auto& [name, value] : state.items()) {
    const auto it = in_model.find(name);
    if (it == in_model.end()) {
      report.unexpected.push_back(name);
      continue;
    }
    LADON_CHECK(std::holds_alternative<Tensor>(value), op, "entry '", name, "' is a ", state_kind_name(value),
                ", not a tensor");
    const Tensor& src = std::get<Tensor>(value);
    const Tensor& dst = *it->second;
    LADON_CHECK(src.defined(), op, "tensor '", name, "' is undefined in the state");
    LADON_CHECK(src.shape() == dst.shape(), op, "tensor '", name, "': shape mismatch, the model has ",
                shape_str(dst.shape()), ", the state has ", shape_str(src.shape()));
    LADON_CHECK(src.dtype() == dst.dtype(), op, "tensor '", name, "' ", shape_str(dst.shape()),
                ": dtype mismatch, the model has ", dtype_name(dst.dtype()), ", the state has ",
                dtype_name(src.dtype()));
  }
  for (const auto& [name, t] : tensors)
    if (!state.contains(name)) report.missing.push_back(name);
  if (strict && (!report.missing.empty() || !report.unexpected.empty())) {
    std::ostringstream msg;
    if (!report.missing.empty()) msg << "missing keys (in the model, not in the state): " << join(report.missing);
    if (!report.unexpected.empty())
      msg << (report.missing.empty() ? "" : "; ")
          << "unexpected keys (in the state, not in the model): " << join(report.unexpected);
    ::ladon::detail::fail(op, msg.str());
  }
  return report;
}

LoadReport load_module_state(Module& model, const StateDict& state, bool strict) {
  LoadReport report = check_module_state(model, state, strict);
  NoGradGuard no_grad;
  for (auto& [name, t] : module_tensors(model, "load_module_state"))
    if (const StateValue* v = state.find(name)) detail::copy_into(t, std::get<Tensor>(*v));
  return report;
}

void save_generator(StateDict& state, const std::string& key, const Generator& gen) {
  const Generator::State g = gen.state();
  for (int i = 0; i < 4; ++i) state.set(key + "." + std::to_string(i), static_cast<std::int64_t>(g.words[i]));
  state.set(key + ".has_spare", static_cast<std::int64_t>(g.has_spare_normal));
  state.set(key + ".spare", g.spare_normal);
}

Generator::State generator_state(const StateDict& state, const std::string& key, const char* op) {
  Generator::State g{};
  for (int i = 0; i < 4; ++i) g.words[i] = static_cast<std::uint64_t>(state.integer(key + "." + std::to_string(i), op));
  g.has_spare_normal = state.integer(key + ".has_spare", op) != 0;
  g.spare_normal = state.number(key + ".spare", op);
  // Checked here, with the rest of the state, so a loader can validate every stream before it sets one.
  LADON_CHECK((g.words[0] | g.words[1] | g.words[2] | g.words[3]) != 0, op, "random stream '", key,
              "' is all zeros, which is not a state of xoshiro256");
  return g;
}

void save_nested(StateDict& outer, const std::string& prefix, const StateDict& inner) {
  for (const auto& [key, value] : inner.items()) outer.set(prefix + "." + key, value);
}

StateDict nested(const StateDict& outer, const std::string& prefix) {
  StateDict inner;
  const std::string start = prefix + ".";
  for (const auto& [key, value] : outer.items())
    if (key.rfind(start, 0) == 0) inner.set(key.substr(start.size()), value);
  return inner;
}

StateDict random_state(Module& model) {
  StateDict out;
  for (const auto& [name, gen] : model.named_generators()) {
    LADON_CHECK(!out.contains(name + ".0"), "random_state", "two random streams are called '", name, "'");
    save_generator(out, name, *gen);
  }
  return out;
}

namespace {
// The saved state of each of the model's streams, in named_generators() order; throws when they
// do not match the model's streams one for one.
std::vector<Generator::State> parse_random_state(Module& model, const StateDict& state) {
  const char* op = "load_random_state";
  const auto generators = model.named_generators();
  std::vector<Generator::State> parsed;
  for (const auto& [name, gen] : generators) {
    LADON_CHECK(state.contains(name + ".0"), op, "no saved state for the model's random stream '", name, "'");
    parsed.push_back(generator_state(state, name, op));
  }
  // Six entries per stream (save_generator): anything more is a stream this model does not have.
  LADON_CHECK(state.size() == 6 * generators.size(), op, "the saved state has ", state.size() / 6,
              " random streams, the model ", generators.size());
  return parsed;
}
}  // namespace

void check_random_state(Module& model, const StateDict& state) { parse_random_state(model, state); }

void load_random_state(Module& model, const StateDict& state) {
  const std::vector<Generator::State> parsed = parse_random_state(model, state);
  const auto generators = model.named_generators();
  for (std::size_t i = 0; i < generators.size(); ++i) generators[i].second->set_state(parsed[i]);
}

}  // namespace ladon::nn
