// The LeNet of Pareto MTL (Lin et al., NeurIPS 2019; Xi-L/ParetoMTL multiMNIST/model_lenet.py), the
// usual model of the MultiMNIST / MultiFashion benchmarks, as a SharedBottom:
//
//   shared trunk: conv 9x9 1->10, ReLU, max-pool 2; conv 5x5 10->20, ReLU, max-pool 2;
//                 flatten; Linear -> 50, ReLU            (the representation MGDA-UB uses)
//   per task:     its tower on the 50 features (TaskSpec::tower_hidden, then TaskSpec::out);
//                 Pareto MTL's head is one Linear 50 -> 10, i.e. {name, 10, {}}
//
// Pareto MTL's images are 36 x 36 (flatten 20 x 5 x 5 = 500); on Sener's 28 x 28 MultiMNIST and
// MultiFashion the flatten is 20 x 3 x 3 = 180. The input is [N, 1, side, side].
//
//   mtl::SharedBottom model = mtl::lenet({.side = 28, .tasks = {{"top_left", 10, {}}, {"bottom_right", 10, {}}}});
#pragma once

#include "layer_fence.h"

#include <cstdint>
#include <vector>

#include "architectures.h"

namespace ladon::mtl {

struct LeNetOptions {
  std::int64_t side = 28;  // input images are [N, 1, side, side]; side >= 20 so both pools have input
  std::vector<TaskSpec> tasks;
};

// The size of the flattened trunk features before the Linear -> 50: 20 * s * s with
// s = ((side - 8) / 2 - 4) / 2 (integer halving, as max-pool 2 floors).
std::int64_t lenet_flatten_size(std::int64_t side);

// Throws unless side >= 20 (the smallest image both convolutions and pools fit) and the tasks can
// form a model (check_tasks).
SharedBottom lenet(const LeNetOptions& options, Generator& gen = default_generator());

}  // namespace ladon::mtl
