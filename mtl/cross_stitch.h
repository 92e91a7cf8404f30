// Cross-stitch networks (Misra et al., CVPR 2016): one column of layers per task; after every
// layer a learned T x T unit mixes the columns, h_t <- sum_s alpha[t][s] h_s. The units start near
// identity (0.9 on the diagonal, 0.1 shared among the others), so columns begin mostly separate.
#pragma once

#include "layer_fence.h"

#include "../nn/linear.h"
#include "model.h"

namespace ladon::mtl {

struct CrossStitchOptions {
  std::int64_t in = 0;
  std::vector<std::int64_t> hidden = {64};  // each column's layer widths, ReLU after each
  std::vector<TaskSpec> tasks;
};

class CrossStitch : public MultiTaskModel {
 public:
  explicit CrossStitch(const CrossStitchOptions& options, Generator& gen = default_generator());
  std::vector<Tensor> forward(const Tensor& x) override;
  void visit(Visitor& v) override;
  Tensor stitch(std::size_t layer) const { return stitches_.at(layer); }  // [T, T]

 private:
  struct Column : nn::Module {
    std::vector<nn::Linear> layers;
    void visit(Visitor& v) override {
      for (std::size_t l = 0; l < layers.size(); ++l) v(std::to_string(l), layers[l]);
    }
  };
  TaskHeads<Column> columns_;
  std::vector<Tensor> stitches_;  // per layer, shared by every task
  TaskTowers towers_;
};

}  // namespace ladon::mtl
