#include "collective.h"

namespace ladon::dist {

void MpiCollective::average(std::span<double> values) {
  comm_.allreduce_sum(values);
  const double scale = 1.0 / comm_.size();
  for (double& v : values) v *= scale;
}

void MpiCollective::average(std::span<float> values) {
  comm_.allreduce_sum(values);
  const float scale = 1.0f / static_cast<float>(comm_.size());
  for (float& v : values) v *= scale;
}

}  // namespace ladon::dist
