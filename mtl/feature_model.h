// Any multi-task model behind a feature-embedding front, so it takes a batch of named features
// (nn::Features: categorical ids, bags of ids, numeric values) directly:
//
//   nn::FeatureEmbedding front({.fields = feature_set.fields(), .dim = 8});
//   const std::int64_t in = front.out_dim();
//   mtl::FeatureModel model(std::move(front), mtl::MMoE({.in = in, .experts = 4, .tasks = tasks}));
//   auto out = model(batch.features);   // one tensor per task
//
// The embedding tables are the front's parameters ("front.tables.<field>.weight"): shared by
// every task, like anything not reached through a task's tower, gate or expert. The inner model's
// parameters are named "model.<its own name>", so its task ownership is kept.
#pragma once

#include "layer_fence.h"

#include <concepts>
#include <memory>

#include "../nn/feature_embedding.h"
#include "model.h"

namespace ladon::mtl {

class FeatureModel : public MultiTaskModel {
 public:
  template <std::derived_from<MultiTaskModel> M>
  FeatureModel(nn::FeatureEmbedding front, M model)
      : FeatureModel(std::move(front), std::unique_ptr<MultiTaskModel>(std::make_unique<M>(std::move(model)))) {}
  FeatureModel(nn::FeatureEmbedding front, std::unique_ptr<MultiTaskModel> model)
      : MultiTaskModel(model->tasks()), front_(std::move(front)), model_(std::move(model)) {}

  std::vector<Tensor> forward(const nn::Features& features) { return forward(front_(features)); }
  std::vector<Tensor> operator()(const nn::Features& features) { return forward(features); }
  // An input already embedded: [batch, front().out_dim()]. The representation is the inner
  // model's (the front sits before it, so every shared parameter still reaches the losses through it).
  std::vector<Tensor> forward(const Tensor& x) override {
    std::vector<Tensor> out = model_->forward(x);
    set_representation(model_->representation());
    return out;
  }
  using MultiTaskModel::operator();

  void visit(Visitor& v) override {
    v("front", front_);
    v("model", *model_);
  }

  nn::FeatureEmbedding& front() { return front_; }
  // The inner model as the type it was built with; throws when it is not an M.
  template <std::derived_from<MultiTaskModel> M>
  M& inner() {
    auto* m = dynamic_cast<M*>(model_.get());
    LADON_CHECK(m != nullptr, "FeatureModel", "the inner model is not of the requested type");
    return *m;
  }

 private:
  nn::FeatureEmbedding front_;
  std::unique_ptr<MultiTaskModel> model_;
};

}  // namespace ladon::mtl
