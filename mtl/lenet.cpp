#include "lenet.h"

#include "../nn/activation.h"
#include "../nn/containers.h"
#include "../nn/conv.h"
#include "../nn/linear.h"
#include "../nn/pool.h"

namespace ladon::mtl {

std::int64_t lenet_flatten_size(std::int64_t side) {
  LADON_CHECK(side >= 20, "lenet", "needs images of side >= 20 (9x9 conv, pool 2, 5x5 conv, pool 2), got ", side);
  const std::int64_t s = ((side - 8) / 2 - 4) / 2;
  return 20 * s * s;
}

SharedBottom lenet(const LeNetOptions& options, Generator& gen) {
  const std::int64_t flat = lenet_flatten_size(options.side);
  check_tasks("lenet", options.tasks);
  // Pareto MTL applies ReLU before each pool (Sener's MultiLeNet pools first; for max-pool the two
  // orders give the same values). Conv then ReLU in a Sequential runs as one fused conv.
  nn::Sequential trunk(nn::Conv2d(1, 10, 9, {}, gen), nn::ReLU(), nn::MaxPool2d(2),   //
                       nn::Conv2d(10, 20, 5, {}, gen), nn::ReLU(), nn::MaxPool2d(2),  //
                       nn::Flatten(), nn::Linear(flat, 50, {}, gen), nn::ReLU());
  return SharedBottom(std::move(trunk), 50, options.tasks, gen);
}

}  // namespace ladon::mtl
