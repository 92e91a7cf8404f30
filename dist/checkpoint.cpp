#include "checkpoint.h"

#include <cstdint>
#include <cstring>
#include <map>
#include <optional>
#include <unordered_set>
#include <utility>
#include <vector>

#include "../core/autograd.h"
#include "../core/error.h"
#include "../nn/optim.h"
#include "expert_parallel.h"

namespace ladon::dist {

namespace {

constexpr const char* kOp = "dist::checkpoint";

// ---- What this rank holds alone: the experts of its expert-parallel layers.

struct Shards {
  std::vector<std::string> prefixes;      // "<layer>.experts." of every sharded layer
  std::unordered_set<TensorImpl*> local;  // this rank's expert parameters
  bool any() const { return !prefixes.empty(); }
  bool expert_key(const std::string& key) const {
    for (const std::string& p : prefixes)
      if (key.rfind(p, 0) == 0) return true;
    return false;
  }
};

Shards shards_of(nn::Module& model) {
  Shards s;
  for (const ShardedLayer& layer : sharded_layers(model))
    s.prefixes.push_back(layer.name.empty() ? "experts." : layer.name + ".experts.");
  for (const Tensor& p : rank_local_parameters(model)) s.local.insert(p.impl().get());
  return s;
}

// Lists that every rank holds in the same order (the common entries, code -1) interleaved with
// entries only one rank holds (its shard, code >= 0). One process lists the common entries with,
// in each gap before (or after) them, every rank's own entries of that gap in rank order: the
// experts of a layer are contiguous and rank r owns a block before rank r + 1's. Returns, for every
// rank, where each of its entries goes in that list.
std::vector<std::vector<std::int64_t>> global_positions(const std::vector<std::vector<std::int64_t>>& codes,
                                                        const char* what) {
  const std::size_t W = codes.size();
  std::vector<std::size_t> commons(W, 0);
  for (std::size_t r = 0; r < W; ++r)
    for (std::int64_t c : codes[r]) commons[r] += c < 0;
  for (std::size_t r = 1; r < W; ++r)
    LADON_CHECK(commons[r] == commons[0], kOp, "rank ", r, " has ", commons[r], " shared ", what, ", rank 0 has ",
                commons[0], ": the ranks' models differ");
  const std::size_t C = commons[0];
  std::vector<std::vector<std::int64_t>> locals(W, std::vector<std::int64_t>(C + 1, 0));  // [rank][gap]
  for (std::size_t r = 0; r < W; ++r) {
    std::size_t gap = 0;
    for (std::int64_t c : codes[r]) c < 0 ? ++gap : ++locals[r][gap];
  }
  std::vector<std::int64_t> base(C + 1, 0), total(C + 1, 0);
  for (std::size_t g = 0; g <= C; ++g) {
    for (std::size_t r = 0; r < W; ++r) total[g] += locals[r][g];
    if (g > 0) base[g] = base[g - 1] + total[g - 1] + 1;
  }
  std::vector<std::vector<std::int64_t>> positions(W);
  for (std::size_t r = 0; r < W; ++r) {
    std::int64_t before = 0;  // other ranks' entries of this gap that come first
    std::vector<std::int64_t> seen(C + 1, 0);
    std::size_t gap = 0;
    for (std::int64_t c : codes[r]) {
      if (c < 0) {
        positions[r].push_back(base[gap] + total[gap]);
        ++gap;
        continue;
      }
      before = 0;
      for (std::size_t q = 0; q < r; ++q) before += locals[q][gap];
      positions[r].push_back(base[gap] + before + seen[gap]++);
    }
  }
  return positions;
}

// The optimizer's parameters, coded for global_positions: -1 for a replicated one, its group for
// an expert shard; and the group of each.
struct OptimizerLayout {
  std::vector<std::int64_t> codes, groups;
};
OptimizerLayout layout_of(const nn::Optimizer& opt, const Shards& shards) {
  OptimizerLayout out;
  for (std::size_t g = 0; g < opt.num_groups(); ++g)
    for (const Tensor& p : opt.group_params(g)) {
      out.groups.push_back(static_cast<std::int64_t>(g));
      out.codes.push_back(shards.local.count(p.impl().get()) ? static_cast<std::int64_t>(g) : -1);
    }
  return out;
}

const nn::Optimizer* as_optimizer(const nn::Stateful* s, const Shards& shards) {
  if (s == nullptr || !shards.any()) return nullptr;
  const auto* opt = dynamic_cast<const nn::Optimizer*>(s);
  LADON_CHECK(opt != nullptr, kOp,
              "a model with expert-parallel layers needs an nn::Optimizer (its state is kept per "
              "parameter, so each rank's part of it is found by parameter)");
  return opt;
}

// "param.<i>.<what>" -> (i, what); nullopt for any other key.
std::optional<std::pair<std::int64_t, std::string>> param_entry(const std::string& key) {
  if (key.rfind("param.", 0) != 0) return std::nullopt;
  const std::size_t dot = key.find('.', 6);
  if (dot == std::string::npos || dot == 6) return std::nullopt;
  std::int64_t i = 0;
  for (std::size_t k = 6; k < dot; ++k) {
    if (key[k] < '0' || key[k] > '9') return std::nullopt;
    i = i * 10 + (key[k] - '0');
  }
  return std::make_pair(i, key.substr(dot + 1));
}

std::string param_key(std::int64_t i, const std::string& what) { return "param." + std::to_string(i) + "." + what; }
std::string group_count_key(std::size_t g) { return "group." + std::to_string(g) + ".params"; }

// ---- StateDicts as bytes, to send a rank's shard to rank 0.

void put(std::vector<char>& out, const void* p, std::size_t n) {
  const char* c = static_cast<const char*>(p);
  out.insert(out.end(), c, c + n);
}
void put_string(std::vector<char>& out, const std::string& s) {
  const std::uint64_t n = s.size();
  put(out, &n, sizeof n);
  put(out, s.data(), s.size());
}

void pack(std::vector<char>& out, const nn::StateDict& d) {
  const std::uint64_t n = d.size();
  put(out, &n, sizeof n);
  for (const auto& [key, value] : d.items()) {
    put_string(out, key);
    const auto kind = static_cast<std::uint8_t>(value.index());
    put(out, &kind, 1);
    if (const Tensor* t = std::get_if<Tensor>(&value)) {
      const Tensor c = t->contiguous();
      const std::uint8_t is_int = c.dtype() == Dtype::int64;
      const std::uint64_t rank = c.shape().size();
      put(out, &is_int, 1);
      put(out, &rank, sizeof rank);
      put(out, c.shape().data(), rank * sizeof(std::int64_t));
      if (is_int)
        put(out, c.data<std::int64_t>(), static_cast<std::size_t>(c.numel()) * sizeof(std::int64_t));
      else
        put(out, c.data<float>(), static_cast<std::size_t>(c.numel()) * sizeof(float));
    } else if (const double* x = std::get_if<double>(&value)) {
      put(out, x, sizeof *x);
    } else if (const std::int64_t* i = std::get_if<std::int64_t>(&value)) {
      put(out, i, sizeof *i);
    } else {
      put_string(out, std::get<std::string>(value));
    }
  }
}

// Reads what pack wrote (bytes from another rank of this job: trusted).
struct Unpacker {
  const std::vector<char>& in;
  std::size_t at = 0;
  void get(void* p, std::size_t n) {
    std::memcpy(p, in.data() + at, n);
    at += n;
  }
  std::string get_string() {
    std::uint64_t n = 0;
    get(&n, sizeof n);
    std::string s(in.data() + at, n);
    at += n;
    return s;
  }
  nn::StateDict dict() {
    nn::StateDict d;
    std::uint64_t n = 0;
    get(&n, sizeof n);
    for (std::uint64_t e = 0; e < n; ++e) {
      const std::string key = get_string();
      std::uint8_t kind = 0;
      get(&kind, 1);
      if (kind == 0) {
        std::uint8_t is_int = 0;
        std::uint64_t rank = 0;
        get(&is_int, 1);
        get(&rank, sizeof rank);
        Shape shape(rank);
        get(shape.data(), rank * sizeof(std::int64_t));
        Tensor t = empty(shape, is_int ? Dtype::int64 : Dtype::float32);
        if (is_int)
          get(t.data<std::int64_t>(), static_cast<std::size_t>(t.numel()) * sizeof(std::int64_t));
        else
          get(t.data<float>(), static_cast<std::size_t>(t.numel()) * sizeof(float));
        d.set(key, t);
      } else if (kind == 1) {
        double x = 0;
        get(&x, sizeof x);
        d.set(key, x);
      } else if (kind == 2) {
        std::int64_t i = 0;
        get(&i, sizeof i);
        d.set(key, i);
      } else {
        d.set(key, nn::StateValue(get_string()));
      }
    }
    return d;
  }
};

// The file one process would write, on rank 0, from every rank's state: the replicated entries
// from rank 0, each expert's from its owner, the optimizer's renumbered to one process's order.
nn::Checkpoint gathered(nn::Module& model, const nn::SaveOptions& options, const Shards& shards, Communicator& comm) {
  nn::Checkpoint c;
  c.model = nn::module_state(model, /*copy=*/false);
  if (options.optimizer) c.optimizer = options.optimizer->state_dict();
  if (options.scheduler) c.scheduler = options.scheduler->state_dict();
  if (options.early_stopping) c.extra["early_stopping"] = options.early_stopping->state_dict();
  c.metadata = options.metadata;
  if (!shards.any()) return c;

  std::vector<std::int64_t> model_codes;
  for (const auto& [key, value] : c.model.items()) model_codes.push_back(shards.expert_key(key) ? 0 : -1);
  const auto all_model_codes = comm.allgather(model_codes);
  const auto model_pos = global_positions(all_model_codes, "model entries");
  const nn::Optimizer* opt = as_optimizer(options.optimizer, shards);
  OptimizerLayout layout;
  if (opt) layout = layout_of(*opt, shards);
  const auto all_opt_codes = comm.allgather(layout.codes);
  const auto opt_pos = global_positions(all_opt_codes, "optimizer parameters");
  const auto me = static_cast<std::size_t>(comm.rank());

  // This rank's shard: its expert entries, and its experts' optimizer entries under their
  // one-process numbers.
  nn::StateDict mine_model, mine_opt;
  for (const auto& [key, value] : c.model.items())
    if (shards.expert_key(key)) mine_model.set(key, value);
  for (const auto& [key, value] : c.optimizer.items()) {
    const auto entry = param_entry(key);
    if (entry && layout.codes[static_cast<std::size_t>(entry->first)] >= 0)
      mine_opt.set(param_key(opt_pos[me][static_cast<std::size_t>(entry->first)], entry->second), value);
  }
  std::vector<char> bytes;
  pack(bytes, mine_model);
  pack(bytes, mine_opt);
  const std::vector<std::vector<char>> parts = comm.gather(bytes, 0);
  if (comm.rank() != 0) return {};

  // Model: every entry at its one-process position; rank 0 has the replicated ones and its experts.
  std::vector<std::optional<std::pair<std::string, nn::StateValue>>> slots;
  const auto place = [&slots](std::int64_t at, const std::string& key, const nn::StateValue& v) {
    if (slots.size() <= static_cast<std::size_t>(at)) slots.resize(static_cast<std::size_t>(at) + 1);
    slots[static_cast<std::size_t>(at)] = std::make_pair(key, v);
  };
  std::size_t j = 0;
  for (const auto& [key, value] : c.model.items()) place(model_pos[0][j++], key, value);
  // Optimizer: entries per one-process parameter number.
  std::map<std::int64_t, std::vector<std::pair<std::string, nn::StateValue>>> params;
  for (const auto& [key, value] : c.optimizer.items())
    if (const auto entry = param_entry(key))
      params[opt_pos[0][static_cast<std::size_t>(entry->first)]].emplace_back(
          param_key(opt_pos[0][static_cast<std::size_t>(entry->first)], entry->second), value);
  for (std::size_t r = 1; r < parts.size(); ++r) {
    Unpacker u{parts[r]};
    const nn::StateDict theirs = u.dict();
    const nn::StateDict theirs_opt = u.dict();
    // Their entries, in order, are the expert entries of their model list, in order.
    std::vector<std::int64_t> at;
    for (std::size_t k = 0; k < all_model_codes[r].size(); ++k)
      if (all_model_codes[r][k] >= 0) at.push_back(model_pos[r][k]);
    LADON_CHECK(at.size() == theirs.size(), kOp, "rank ", r, " sent ", theirs.size(), " expert entries for ",
                at.size());
    std::size_t k = 0;
    for (const auto& [key, value] : theirs.items()) place(at[k++], key, value);
    for (const auto& [key, value] : theirs_opt.items()) params[param_entry(key)->first].emplace_back(key, value);
  }
  nn::StateDict model_state;
  for (const auto& slot : slots) {
    LADON_CHECK(slot.has_value(), kOp, "an entry of the gathered model is missing");
    model_state.set(slot->first, slot->second);
  }
  c.model = std::move(model_state);
  if (opt) {
    // One process's group sizes: the replicated parameters once, every rank's experts.
    std::vector<std::int64_t> group_size(opt->num_groups(), 0);
    for (std::size_t k = 0; k < layout.codes.size(); ++k)
      if (layout.codes[k] < 0) ++group_size[static_cast<std::size_t>(layout.groups[k])];
    for (const auto& codes : all_opt_codes)
      for (std::int64_t g : codes)
        if (g >= 0) ++group_size[static_cast<std::size_t>(g)];
    nn::StateDict state;
    for (const auto& [key, value] : c.optimizer.items())
      if (!param_entry(key)) state.set(key, value);
    for (std::size_t g = 0; g < group_size.size(); ++g) state.set(group_count_key(g), group_size[g]);
    for (const auto& [number, entries] : params)
      for (const auto& [key, value] : entries) state.set(key, value);
    c.optimizer = std::move(state);
  }
  return c;
}

// Where this rank's optimizer parameters sit in one process's numbering, and one process's group
// sizes. Collective.
struct OptimizerMap {
  std::vector<std::int64_t> global;  // local parameter index -> one-process index
  std::vector<std::int64_t> group_size;
};
OptimizerMap optimizer_map(const nn::Optimizer* opt, const Shards& shards, Communicator& comm) {
  OptimizerLayout layout;
  if (opt) layout = layout_of(*opt, shards);
  const auto all = comm.allgather(layout.codes);
  OptimizerMap m;
  m.global = global_positions(all, "optimizer parameters")[static_cast<std::size_t>(comm.rank())];
  if (!opt) return m;
  m.group_size.assign(opt->num_groups(), 0);
  for (std::size_t k = 0; k < layout.codes.size(); ++k)
    if (layout.codes[k] < 0) ++m.group_size[static_cast<std::size_t>(layout.groups[k])];
  for (const auto& codes : all)
    for (std::int64_t g : codes)
      if (g >= 0) ++m.group_size[static_cast<std::size_t>(g)];
  return m;
}

// One process's optimizer state cut down to this rank's parameters, renumbered.
nn::StateDict optimizer_shard(const nn::StateDict& state, const OptimizerMap& m, const nn::Optimizer& opt) {
  std::map<std::int64_t, std::int64_t> local_of;
  for (std::size_t i = 0; i < m.global.size(); ++i) local_of[m.global[i]] = static_cast<std::int64_t>(i);
  nn::StateDict out;
  for (const auto& [key, value] : state.items()) {
    const auto entry = param_entry(key);
    if (!entry) {
      out.set(key, value);
    } else if (const auto it = local_of.find(entry->first); it != local_of.end()) {
      out.set(param_key(it->second, entry->second), value);
    }
  }
  for (std::size_t g = 0; g < m.group_size.size(); ++g) {
    const std::string key = group_count_key(g);
    if (!state.contains(key)) continue;  // the optimizer's own check names what is missing
    const std::int64_t n = state.integer(key, kOp);
    LADON_CHECK(n == m.group_size[g], opt.name(), "group ", g, " has ", n, " parameters in the state, ",
                m.group_size[g], " in this optimizer over every rank");
    out.set(key, static_cast<std::int64_t>(opt.group_params(g).size()));
  }
  return out;
}

// nn::load_checkpoint's checks and loads, on the file's contents cut down to this rank's shard.
nn::LoadedCheckpoint load_shard(const std::string& path, nn::Module& model, const nn::LoadOptions& options,
                                const Shards& shards, const nn::Optimizer* opt, const OptimizerMap& m) {
  nn::LoadedCheckpoint out;
  out.checkpoint = nn::read_checkpoint(path);
  nn::Checkpoint c = out.checkpoint;
  const nn::StateDict* early = nullptr;
  if (const auto it = c.extra.find("early_stopping"); it != c.extra.end()) early = &it->second;
  try {
    if (shards.any()) {
      // The other ranks' experts are theirs to load.
      std::unordered_set<std::string> keys;
      const nn::StateDict own = nn::module_state(model, /*copy=*/false);
      for (const auto& [key, value] : own.items()) keys.insert(key);
      nn::StateDict kept;
      for (const auto& [key, value] : c.model.items())
        if (!shards.expert_key(key) || keys.count(key)) kept.set(key, value);
      c.model = std::move(kept);
      if (opt && !c.optimizer.empty()) c.optimizer = optimizer_shard(c.optimizer, m, *opt);
    }
    // Every part is checked before anything changes.
    out.report = nn::check_module_state(model, c.model, options.strict);
    if (options.optimizer) {
      if (c.optimizer.empty()) throw Error("the file has no optimizer state");
      options.optimizer->check_state_dict(c.optimizer);
    }
    if (options.scheduler) {
      if (c.scheduler.empty()) throw Error("the file has no scheduler state");
      options.scheduler->check_state_dict(c.scheduler);
    }
    if (options.early_stopping) {
      if (early == nullptr) throw Error("the file has no early-stopping state");
      options.early_stopping->check_state_dict(*early);
    }
  } catch (const Error& e) {
    throw Error("load_checkpoint '" + path + "': " + e.what());
  }
  nn::load_module_state(model, c.model, options.strict);
  if (options.optimizer) options.optimizer->load_state_dict(c.optimizer);
  if (options.scheduler) options.scheduler->load_state_dict(c.scheduler);
  if (options.early_stopping) options.early_stopping->load_state_dict(*early);
  out.metadata = c.metadata;
  return out;
}

}  // namespace

void save_checkpoint(const std::string& path, nn::Module& model, const nn::SaveOptions& options, Communicator& comm) {
  const Shards shards = shards_of(model);
  const nn::Checkpoint c = gathered(model, options, shards, comm);
  // Rank 0's outcome, broadcast: empty when the file was written, otherwise its error message.
  std::vector<char> error;
  if (comm.rank() == 0) {
    try {
      nn::write_checkpoint(path, c);
    } catch (const Error& e) {
      const std::string what = e.what();
      error.assign(what.begin(), what.end());
    }
  }
  comm.broadcast(error, 0);
  if (!error.empty()) throw Error(std::string(error.begin(), error.end()));
}

nn::LoadedCheckpoint load_checkpoint(const std::string& path, nn::Module& model, const nn::LoadOptions& options,
                                     Communicator& comm) {
  // The collective part first, the same on every rank whatever its file holds.
  const Shards shards = shards_of(model);
  const nn::Optimizer* opt = as_optimizer(options.optimizer, shards);
  OptimizerMap m;
  if (shards.any()) m = optimizer_map(opt, shards, comm);
  // Every rank reads the file itself. When any rank fails (the file is missing on its node), every
  // rank throws the first failing rank's message, so none goes on training alone.
  nn::LoadedCheckpoint loaded;
  std::string what;
  try {
    loaded = load_shard(path, model, options, shards, opt, m);
  } catch (const Error& e) {
    what = e.what();
  }
  std::vector<std::int64_t> failed(static_cast<std::size_t>(comm.size()), 0);
  failed[static_cast<std::size_t>(comm.rank())] = what.empty() ? 0 : 1;
  comm.allreduce_sum(failed);
  for (int r = 0; r < comm.size(); ++r) {
    if (!failed[static_cast<std::size_t>(r)]) continue;
    std::vector<char> message(what.begin(), what.end());
    comm.broadcast(message, r);
    throw Error(std::string(message.begin(), message.end()) +
                (r == comm.rank() ? "" : " (on rank " + std::to_string(r) + ")"));
  }
  return loaded;
}

}  // namespace ladon::dist
