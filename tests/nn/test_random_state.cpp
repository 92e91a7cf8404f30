// Every random stream of a model saved and restored by dotted name.
#include <doctest/doctest.h>

#include "ladon.h"

using namespace ladon;

TEST_CASE("random_state: every Dropout's stream, by dotted name, restored exactly") {
  // Sigmoid, not ReLU: a ReLU could zero every output of the randomly initialised Linear, hiding the masks.
  nn::Sequential net(nn::Linear(3, 3), nn::Dropout(0.5, 1), nn::Sigmoid(), nn::Dropout(0.5, 2));
  const nn::StateDict saved = nn::random_state(net);
  CHECK(saved.keys() == std::vector<std::string>{"1.generator.0", "1.generator.1", "1.generator.2", "1.generator.3",
                                                 "1.generator.has_spare", "1.generator.spare", "3.generator.0",
                                                 "3.generator.1", "3.generator.2", "3.generator.3",
                                                 "3.generator.has_spare", "3.generator.spare"});
  const Tensor x = ones({4, 3});
  const std::vector<float> first = net(x).to_vector<float>();
  CHECK(net(x).to_vector<float>() != first);  // the masks moved on
  nn::load_random_state(net, saved);
  CHECK(net(x).to_vector<float>() == first);
  nn::Sequential other(nn::Linear(3, 3), nn::Dropout(0.5, 1));
  CHECK_THROWS_WITH_AS(nn::load_random_state(other, saved),
                       "load_random_state: the saved state has 2 random streams, the model 1", Error);
  const nn::StateDict now = nn::random_state(net);
  nn::StateDict broken = saved;
  broken.erase("3.generator.spare");
  CHECK_THROWS_WITH_AS(nn::load_random_state(net, broken), doctest::Contains("3.generator.spare"), Error);
  CHECK(nn::random_state(net) == now);  // the failed call changed nothing
  nn::StateDict zeroed = saved;
  for (int i = 0; i < 4; ++i) zeroed.set("1.generator." + std::to_string(i), std::int64_t{0});
  CHECK_THROWS_WITH_AS(nn::load_random_state(net, zeroed), doctest::Contains("'1.generator' is all zeros"), Error);
  CHECK(nn::random_state(net) == now);
}
