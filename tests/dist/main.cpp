// The dist/ test program: every rank runs every test case (each is collective), under
// mpirun -np 1, 2 and 4 (tests/meson.build). The exit status is non-zero when any rank failed.
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include <cstdint>

#include "dist/dist.h"

int main(int argc, char** argv) {
  ladon::dist::Environment mpi(argc, argv);
  ladon::dist::Communicator& world = ladon::dist::world();
  doctest::Context context(argc, argv);
  if (world.rank() != 0) context.setOption("minimal", true);  // failures only, from ranks above 0
  const int status = context.run();
  if (context.shouldExit()) return status;
  std::int64_t failed = status != 0 ? 1 : 0;
  world.allreduce_sum(std::span<std::int64_t>(&failed, 1));
  return failed > 0 ? 1 : 0;
}
