// A job where one rank hits a ladon::Error while the others wait in an allreduce it never joins.
// tests/dist/error_exit.sh checks that every rank ends, non-zero, within a timeout, with the error.
#include <cstdint>

#include "dist/dist.h"
#include "ladon.h"

using namespace ladon;

int main(int argc, char** argv) {
  dist::Environment mpi(argc, argv);
  dist::Communicator& world = dist::world();
  if (world.rank() == world.size() - 1) {
    const Tensor bad = matmul(zeros({2, 3}), zeros({4, 5}));  // throws: inner sizes differ
    (void)bad;
  }
  std::int64_t value = 1;
  world.allreduce_sum(std::span<std::int64_t>(&value, 1));  // the last rank never gets here
  return 0;
}
