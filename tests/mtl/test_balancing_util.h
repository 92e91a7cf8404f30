// The small models and checks the balancer tests share.
#pragma once

#include <doctest/doctest.h>

#include <cmath>
#include <string>
#include <vector>

#include "ladon.h"

namespace ladon::testing {

inline void check_vec(const std::vector<double>& got, const std::vector<double>& want, double tol = 1e-6) {
  REQUIRE(got.size() == want.size());
  for (std::size_t i = 0; i < got.size(); ++i) {
    CAPTURE(i);
    CHECK(std::fabs(got[i] - want[i]) <= tol * std::max(1.0, std::fabs(want[i])));
  }
}

// One scalar parameter, as a module (a task's "head").
struct Scalar : nn::Module {
  Tensor value = tensor({1.0f}).requires_grad_();
  void visit(Visitor& v) override { v("value", value); }
};

inline std::vector<mtl::TaskSpec> regression_tasks(std::size_t tasks) {
  std::vector<mtl::TaskSpec> out;
  for (std::size_t t = 0; t < tasks; ++t) {
    std::string name = "t";  // not "t" + to_string: GCC 12's -Wrestrict misfires on it at -O3
    name += std::to_string(t);
    out.push_back({name, 1, {}, mtl::TaskKind::regression});
  }
  return out;
}

// A shared W (by default (1, 3)) and one scalar head per task; the tests write the losses by hand
// from them. forward() computes z = 2 W and records it as the shared representation: shaped like
// W, or as one sample [1, n] with batch_dim.
class Tiny : public mtl::MultiTaskModel {
 public:
  explicit Tiny(std::size_t tasks, std::vector<float> w = {1.0f, 3.0f}, bool batch_dim = false)
      : MultiTaskModel(regression_tasks(tasks)), W(tensor(w, {static_cast<std::int64_t>(w.size())}).requires_grad_()), batch_dim_(batch_dim) {
    for (const mtl::TaskSpec& t : tasks_) heads.add(t.name, Scalar());
  }
  std::vector<Tensor> forward(const Tensor&) override {
    z = W * 2.0;
    if (batch_dim_) z = z.reshape({1, W.numel()});
    set_representation({z});
    return {};
  }
  void visit(Visitor& v) override {
    v("W", W);
    v("heads", heads);
  }
  Tensor head(std::size_t t) { return heads[t].value; }

  Tensor W;
  Tensor z;
  mtl::TaskHeads<Scalar> heads;

 private:
  bool batch_dim_;
};

inline std::vector<float> grad_of(const Tensor& p) { return p.grad().to_vector<float>(); }

}  // namespace ladon::testing
