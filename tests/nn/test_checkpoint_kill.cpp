// Checkpoint files under attack (issue 11): a failed load changes nothing, stale temporaries of
// killed writers are cleaned (never a live writer's), and a writer SIGKILLed at random moments
// always leaves a checkpoint that loads intact.
#include <doctest/doctest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <thread>

#include "helpers.h"
#include "ladon.h"
#include "nn/checkpoint.h"
#include "nn/linear.h"
#include "nn/optim.h"

using namespace ladon;
using ladon::testing::TempDir;
namespace fs = std::filesystem;

namespace {
// The temporaries a checkpoint writer left in `dir`.
int temporaries(const TempDir& dir) {
  int n = 0;
  for (const auto& e : fs::directory_iterator(dir.path())) n += e.path().filename().string().find(".tmp.") != std::string::npos;
  return n;
}
std::vector<float> weights(nn::Linear& layer) { return layer.named_parameters()[0].second.to_vector<float>(); }
}  // namespace

TEST_CASE("a checkpoint with a valid checksum but beta1 = 1.5 leaves model and optimizer untouched") {
  TempDir dir;
  const std::string path = dir.file("a.ckpt");
  Generator gen(1);
  nn::Linear saved(3, 2, {}, gen);
  nn::Adam saved_opt(saved.parameters(), {.lr = 0.01});
  nn::save_checkpoint(path, saved, {.optimizer = &saved_opt});
  nn::Checkpoint c = nn::read_checkpoint(path);
  c.optimizer.set("hyper.beta1", 1.5);
  nn::write_checkpoint(path, c);  // a fresh, valid checksum over the bad value

  nn::Linear model(3, 2, {}, gen);
  nn::Adam opt(model.parameters(), {.lr = 0.5, .beta1 = 0.8});
  const std::vector<float> before = weights(model);
  CHECK_THROWS_WITH_AS(nn::load_checkpoint(path, model, {.optimizer = &opt}),
                       ("load_checkpoint '" + path + "': Adam: beta1 must be in [0, 1), got 1.5").c_str(), Error);
  CHECK(weights(model) == before);
  CHECK(opt.state_dict().number("hyper.beta1") == 0.8);
  CHECK(opt.lr(0) == 0.5);
}

TEST_CASE("a save removes stale temporaries of killed writers, never a live writer's") {
  TempDir dir;
  const std::string path = dir.file("m.ckpt");
  // A dead writer's leftover: a child that created its temporary and exited.
  const pid_t child = ::fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    std::ofstream(path + ".tmp." + std::to_string(::getpid())) << "partial";
    ::_exit(0);
  }
  int status = 0;
  REQUIRE(::waitpid(child, &status, 0) == child);
  const std::string dead = path + ".tmp." + std::to_string(child);
  REQUIRE(fs::exists(dead));
  // A live process's temporary (our parent is alive), and another checkpoint's leftover.
  const std::string live = path + ".tmp." + std::to_string(::getppid());
  std::ofstream(live) << "in progress";
  const std::string other = dir.file("other.ckpt.tmp." + std::to_string(child));
  std::ofstream(other) << "not ours";

  Generator gen(2);
  nn::Linear model(2, 2, {}, gen);
  nn::save_checkpoint(path, model);
  CHECK_FALSE(fs::exists(dead));
  CHECK(fs::exists(live));
  CHECK(fs::exists(other));
  CHECK(fs::exists(path));
}

TEST_CASE("a writer SIGKILLed at random moments always leaves an intact checkpoint and no pile of temporaries") {
  TempDir dir;
  const std::string path = dir.file("k.ckpt");
  Generator gen(3);
  // About 2 MiB, so a save spans many write chunks and a kill often lands inside one.
  nn::Linear model(512, 1024, {}, gen);
  nn::save_checkpoint(path, model);
  const std::vector<float> expected = weights(model);
  constexpr int kKills = 20;
  const auto started = std::chrono::steady_clock::now();
  Generator delays(4);
  int killed_mid_write = 0;
  for (int k = 0; k < kKills; ++k) {
    const pid_t child = ::fork();
    REQUIRE(child >= 0);
    if (child == 0) {
      try {
        for (;;) nn::save_checkpoint(path, model);
      } catch (...) {
        ::_exit(2);
      }
    }
    std::this_thread::sleep_for(std::chrono::microseconds(200 + delays.below(20000)));
    ::kill(child, SIGKILL);
    int status = 0;
    REQUIRE(::waitpid(child, &status, 0) == child);
    REQUIRE(WIFSIGNALED(status));  // the child never stopped on its own (no error)
    killed_mid_write += fs::exists(path + ".tmp." + std::to_string(child)) ? 1 : 0;
    // The last complete checkpoint loads and holds the weights.
    Generator other(99);
    nn::Linear fresh(512, 1024, {}, other);
    nn::load_checkpoint(path, fresh);
    CHECK(weights(fresh) == expected);
    // Each new writer removes its dead predecessors' leftovers: at most the latest one remains.
    CHECK(temporaries(dir) <= 1);
    REQUIRE(std::chrono::steady_clock::now() - started < std::chrono::seconds(60));
  }
  MESSAGE(killed_mid_write << " of " << kKills << " kills landed mid-write");
  nn::save_checkpoint(path, model);
  CHECK(temporaries(dir) == 0);
}
