// CGC and PLE (Tang et al., RecSys 2020). Experts are split into shared ones and ones owned by each
// task; task k's gate mixes only its own experts and the shared ones. PLE stacks such levels: at
// each level task branches read their own previous output, and (on every level but the last) a
// shared gate over all experts of the level feeds the next level's shared experts. CGC is PLE with
// one level.
#pragma once

#include "layer_fence.h"

#include "experts.h"
#include "gate.h"
#include "model.h"

namespace ladon::mtl {

struct PLEOptions {
  std::int64_t in = 0;
  std::int64_t levels = 2;
  std::int64_t shared_experts = 2;
  std::int64_t task_experts = 2;  // per task
  std::vector<std::int64_t> expert_hidden = {64};
  std::vector<TaskSpec> tasks;
  GateOptions gate = {};  // every gate's temperature and hidden layers, task and shared
};

class PLE : public MultiTaskModel {
 public:
  explicit PLE(const PLEOptions& options, Generator& gen = default_generator());
  std::vector<Tensor> forward(const Tensor& x) override;
  void visit(Visitor& v) override;

  // Task t's gate weights on the last level, [batch, task_experts + shared_experts]: its own
  // experts first, then the shared ones.
  Tensor gate_weights(std::size_t task) const;

 private:
  struct Level : nn::Module {
    Level(ExpertBank shared) : shared_experts(std::move(shared)) {}
    TaskHeads<ExpertBank> task_experts;  // one bank per task; unused when task_experts = 0
    ExpertBank shared_experts;           // unused when shared_experts = 0
    TaskHeads<Gate> task_gates;
    std::vector<Gate> shared_gate;  // empty on the last level
    bool has_task_experts = true, has_shared_experts = true;
    void visit(Visitor& v) override;
  };
  PLEOptions options_;
  std::vector<Level> levels_;
  TaskTowers towers_;
  std::vector<Tensor> last_gates_;
};

class CGC : public PLE {
 public:
  explicit CGC(PLEOptions options, Generator& gen = default_generator()) : PLE(with_one_level(options), gen) {}

 private:
  static PLEOptions with_one_level(PLEOptions options) {
    options.levels = 1;
    return options;
  }
};

}  // namespace ladon::mtl
