// Checkpoints: round trips, the atomic write (a writer killed mid-save), and every way a load can
// fail, each leaving the model untouched.
#include <doctest/doctest.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <limits>

#include "helpers.h"
#include "ladon.h"
#include "nn/checkpoint.h"
#include "nn/early_stopping.h"
#include "nn/linear.h"
#include "nn/optim.h"
#include "nn/scheduler.h"

using namespace ladon;
using ladon::testing::TempDir;
using ladon::testing::error_message;
namespace fs = std::filesystem;

namespace {

// Two layers plus a float and an int64 buffer, so names nest and both dtypes are saved.
struct Net : nn::Module {
  nn::Linear fc1, fc2;
  Tensor running = zeros({3});
  Tensor counter = zeros({1}, Dtype::int64);
  explicit Net(std::uint64_t seed, std::int64_t hidden = 4, std::int64_t out = 2)
      : fc1(make(3, hidden, seed)), fc2(make(hidden, out, seed + 1)) {
    running = uniform({3}, -1, 1, gen(seed + 2));
    counter = tensor(std::vector<std::int64_t>{static_cast<std::int64_t>(seed) * 1000 + 7}, {1});
  }
  void visit(Visitor& v) override {
    v("fc1", fc1);
    v("fc2", fc2);
    v.buffer("running", running);
    v.buffer("counter", counter);
  }
  static Generator& gen(std::uint64_t seed) {
    static Generator g;
    g.seed_(seed);
    return g;
  }
  static nn::Linear make(std::int64_t in, std::int64_t out, std::uint64_t seed) {
    return nn::Linear(in, out, {}, gen(seed));
  }
};


std::vector<char> read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), {}};
}
void write_bytes(const std::string& path, const std::vector<char>& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

void train_steps(Net& net, nn::Optimizer& opt, int steps) {
  const Tensor x = tensor({0.5f, -1, 2, 1, 0, -0.5f}, {2, 3});
  for (int s = 0; s < steps; ++s) {
    opt.zero_grad();
    sum(net.fc2(relu(net.fc1(x)))).backward();
    opt.step();
  }
}

}  // namespace

TEST_CASE("checkpoint round trip: model, optimizer, scheduler, early stopping and metadata") {
  TempDir dir;
  const std::string path = dir.file("run.ckpt");
  Net net(1);
  nn::Adam opt(net.parameters(), {.lr = 0.01});
  nn::StepLR sched(opt, {.step_size = 2, .gamma = 0.5});
  nn::EarlyStopping stopper(net, {.patience = 3});
  train_steps(net, opt, 3);
  sched.step();
  sched.step();
  sched.step();
  stopper.step(0.5);
  nn::StateDict meta;
  meta.set("epoch", 3);
  meta.set("val_accuracy", 0.9125);
  meta.set("note", "first run");
  nn::save_checkpoint(path, net,
                      {.optimizer = &opt, .scheduler = &sched, .early_stopping = &stopper, .metadata = meta});
  CHECK(dir.entries() == 1);  // no temporary file left behind

  Net other(2);
  nn::Adam opt2(other.parameters(), {.lr = 0.01});
  nn::StepLR sched2(opt2, {.step_size = 2, .gamma = 0.5});
  nn::EarlyStopping stopper2(other, {.patience = 3});
  CHECK_FALSE(nn::module_state(other) == nn::module_state(net));
  const auto loaded =
      nn::load_checkpoint(path, other, {.optimizer = &opt2, .scheduler = &sched2, .early_stopping = &stopper2});
  CHECK(nn::module_state(other) == nn::module_state(net));
  CHECK(other.counter.to_vector<std::int64_t>() == std::vector<std::int64_t>{1007});
  CHECK(opt2.state_dict() == opt.state_dict());
  CHECK(opt2.lr() == 0.005);
  CHECK(sched2.epoch() == 3);
  CHECK(stopper2.state_dict() == stopper.state_dict());
  CHECK(loaded.metadata.integer("epoch") == 3);
  CHECK(loaded.metadata.number("val_accuracy") == 0.9125);  // doubles are stored exactly
  CHECK(loaded.metadata.string("note") == "first run");
  CHECK(loaded.report.missing.empty());
  // Training continues identically from the loaded state.
  train_steps(net, opt, 2);
  train_steps(other, opt2, 2);
  CHECK(nn::module_state(other) == nn::module_state(net));

  // Saving again replaces the file.
  meta.set("epoch", 5);
  nn::save_checkpoint(path, net, {.metadata = meta});
  CHECK(nn::read_checkpoint(path).metadata.integer("epoch") == 5);
  CHECK(nn::read_checkpoint(path).optimizer.empty());
  CHECK(dir.entries() == 1);
}

TEST_CASE("write_checkpoint and read_checkpoint keep every value kind and extra sections") {
  TempDir dir;
  nn::Checkpoint c;
  c.model.set("w", tensor({1.5f, -2, 3, 4}, {2, 2}).t());  // non-contiguous: written in logical order
  c.model.set("idx", tensor(std::vector<std::int64_t>{-3, 1LL << 40}, {2}));
  c.model.set("scalar", scalar(2.5));
  c.model.set("empty", zeros({0, 3}));
  c.metadata.set("pi", 3.141592653589793);
  c.metadata.set("big", std::int64_t{1} << 53);
  c.metadata.set("text", std::string("a\0b", 3));
  c.extra["balancer"].set("log_vars", tensor({0.25f, -0.5f}));
  nn::write_checkpoint(dir.file("a.ckpt"), c);
  const nn::Checkpoint r = nn::read_checkpoint(dir.file("a.ckpt"));
  CHECK(r.model.tensor("w").to_vector<float>() == std::vector<float>{1.5f, 3, -2, 4});
  CHECK(r.model.tensor("w").shape() == Shape{2, 2});
  CHECK(r.model.tensor("idx").to_vector<std::int64_t>() == std::vector<std::int64_t>{-3, 1LL << 40});
  CHECK(r.model.tensor("scalar").shape() == Shape{});
  CHECK(r.model.tensor("scalar").item() == 2.5);
  CHECK(r.model.tensor("empty").shape() == Shape{0, 3});
  CHECK(r.metadata.number("pi") == 3.141592653589793);
  CHECK(r.metadata.integer("big") == std::int64_t{1} << 53);
  CHECK(r.metadata.string("text") == std::string("a\0b", 3));
  REQUIRE(r.extra.count("balancer") == 1);
  CHECK(r.extra.at("balancer") == c.extra.at("balancer"));
  CHECK(r.model.keys() == std::vector<std::string>{"w", "idx", "scalar", "empty"});

  c.model.set("undefined", Tensor());
  CHECK(error_message([&] { nn::write_checkpoint(dir.file("b.ckpt"), c); }) ==
        "save_checkpoint: section 'model', entry 'undefined' is an undefined tensor");
  CHECK_FALSE(fs::exists(dir.file("b.ckpt")));
  CHECK(error_message([&] { nn::write_checkpoint(dir.file("no/such/dir/c.ckpt"), nn::Checkpoint{}); }) ==
        "save_checkpoint: cannot create '" + dir.file("no/such/dir/c.ckpt") + ".tmp." + std::to_string(::getpid()) +
            "': No such file or directory");
}

TEST_CASE("a damaged file fails to load with a precise message and leaves the model unchanged") {
  TempDir dir;
  const std::string path = dir.file("m.ckpt");
  Net saved(1);
  nn::save_checkpoint(path, saved);
  const std::vector<char> good = read_bytes(path);
  REQUIRE(good.size() > 100);

  Net net(2);
  const nn::StateDict before = nn::module_state(net);
  auto load = [&] { nn::load_checkpoint(path, net); };

  SUBCASE("missing") {
    CHECK(error_message([&] { nn::load_checkpoint(dir.file("nope.ckpt"), net); }) ==
          "read_checkpoint: cannot open '" + dir.file("nope.ckpt") + "': No such file or directory");
  }
  SUBCASE("truncated in the payload") {
    write_bytes(path, std::vector<char>(good.begin(), good.begin() + 100));
    CHECK(error_message(load) == "read_checkpoint: '" + path + "' is truncated: 100 bytes, the header promises " +
                                std::to_string(good.size()));
  }
  SUBCASE("truncated by one byte") {
    write_bytes(path, std::vector<char>(good.begin(), good.end() - 1));
    CHECK(error_message(load).find("is truncated: " + std::to_string(good.size() - 1) + " bytes") != std::string::npos);
  }
  SUBCASE("truncated in the header") {
    write_bytes(path, std::vector<char>(good.begin(), good.begin() + 5));
    CHECK(error_message(load) == "read_checkpoint: '" + path + "' is truncated: 5 bytes, shorter than the header");
    write_bytes(path, std::vector<char>(good.begin(), good.begin() + 12));
    CHECK(error_message(load) == "read_checkpoint: '" + path + "' is truncated: 12 bytes, shorter than the 24-byte header");
    write_bytes(path, {});
    CHECK(error_message(load) == "read_checkpoint: '" + path + "' is truncated: 0 bytes, shorter than the header");
  }
  SUBCASE("one flipped bit anywhere after the header") {
    for (std::size_t at : {std::size_t{30}, good.size() / 2, good.size() - 10, good.size() - 1}) {
      CAPTURE(at);
      std::vector<char> bad = good;
      bad[at] = static_cast<char>(bad[at] ^ 0x10);
      write_bytes(path, bad);
      const std::string msg = error_message(load);
      CHECK(msg.rfind("read_checkpoint: '" + path + "' is corrupt: checksum mismatch (stored ", 0) == 0);
    }
  }
  SUBCASE("trailing bytes") {
    std::vector<char> bad = good;
    bad.push_back('x');
    write_bytes(path, bad);
    CHECK(error_message(load) == "read_checkpoint: '" + path + "' is corrupt: " + std::to_string(good.size() + 1) +
                                " bytes, the header promises " + std::to_string(good.size()));
  }
  SUBCASE("wrong magic") {
    std::vector<char> bad = good;
    bad[0] = 'P';
    bad[1] = 'K';
    write_bytes(path, bad);
    CHECK(error_message(load) ==
          "read_checkpoint: '" + path + "' is not a ladon checkpoint (its first bytes are not \"LADONCKP\")");
  }
  SUBCASE("wrong version") {
    std::vector<char> bad = good;
    bad[8] = 2;
    write_bytes(path, bad);
    CHECK(error_message(load) == "read_checkpoint: '" + path + "' has format version 2; this build reads version 1");
  }
  CHECK(nn::module_state(net) == before);
}

TEST_CASE("a mismatched model or optimizer fails before anything is written") {
  TempDir dir;
  const std::string path = dir.file("m.ckpt");
  Net saved(1);
  nn::Adam adam(saved.parameters(), {.lr = 0.1});
  train_steps(saved, adam, 1);
  nn::save_checkpoint(path, saved, {.optimizer = &adam});

  SUBCASE("shape mismatch in a later tensor: the earlier ones are not written either") {
    Net net(2, 4, 3);  // fc2 is [3, 4] here, [2, 4] in the file
    const nn::StateDict before = nn::module_state(net);
    CHECK(error_message([&] { nn::load_checkpoint(path, net); }) ==
          "load_checkpoint '" + path +
              "': load_module_state: tensor 'fc2.weight': shape mismatch, the model has [3, 4], the state has [2, 4]");
    CHECK(nn::module_state(net) == before);
  }
  SUBCASE("missing and unexpected keys, strict and not") {
    struct Smaller : nn::Module {
      nn::Linear fc1{3, 4};
      Tensor extra = zeros({2});
      void visit(Visitor& v) override {
        v("fc1", fc1);
        v.buffer("extra", extra);
      }
    } net;
    const nn::StateDict before = nn::module_state(net);
    CHECK(error_message([&] { nn::load_checkpoint(path, net); }) ==
          "load_checkpoint '" + path +
              "': load_module_state: missing keys (in the model, not in the state): extra; unexpected keys (in the "
              "state, not in the model): fc2.weight, fc2.bias, running, counter");
    CHECK(nn::module_state(net) == before);
    const auto loaded = nn::load_checkpoint(path, net, {.strict = false});
    CHECK(loaded.report.missing == std::vector<std::string>{"extra"});
    CHECK(loaded.report.unexpected == std::vector<std::string>{"fc2.weight", "fc2.bias", "running", "counter"});
    CHECK(equal(net.fc1.weight, saved.fc1.weight));
    CHECK(equal(net.extra, zeros({2})));
  }
  SUBCASE("a dtype mismatch") {
    struct Floaty : Net {
      Floaty() : Net(2) { counter = zeros({1}); }
    } net;
    CHECK(error_message([&] { nn::load_checkpoint(path, net); }) ==
          "load_checkpoint '" + path +
              "': load_module_state: tensor 'counter' [1]: dtype mismatch, the model has float32, the state has int64");
  }
  SUBCASE("the optimizer state does not fit: the model is not written") {
    Net net(2);
    const nn::StateDict before = nn::module_state(net);
    nn::SGD sgd(net.parameters(), {.lr = 0.1});
    CHECK(error_message([&] { nn::load_checkpoint(path, net, {.optimizer = &sgd}); }) ==
          "load_checkpoint '" + path + "': SGD: the state was saved by Adam, this is SGD");
    CHECK(nn::module_state(net) == before);
    nn::Adam adam2(net.parameters());
    nn::StepLR sched(adam2, {.step_size = 1});
    CHECK(error_message([&] { nn::load_checkpoint(path, net, {.optimizer = &adam2, .scheduler = &sched}); }) ==
          "load_checkpoint '" + path + "': the file has no scheduler state");
    CHECK(nn::module_state(net) == before);
    CHECK(adam2.param_steps(0) == 0);
  }
}

TEST_CASE("a writer killed mid-save leaves the previous checkpoint intact") {
  TempDir dir;
  const std::string path = dir.file("model.ckpt");
  Net old_model(1);
  nn::save_checkpoint(path, old_model);
  const std::vector<char> old_bytes = read_bytes(path);

  // A big checkpoint (16 MiB of weights: 16 write chunks), prepared before forking so the child
  // only does file I/O.
  nn::Checkpoint big;
  big.model = nn::module_state(old_model);
  big.model.set("huge", full({4 << 20}, 0.5));

  for (const bool kill_it : {true, false}) {
    CAPTURE(kill_it);
    int fds[2];
    REQUIRE(::pipe(fds) == 0);
    const pid_t child = ::fork();
    REQUIRE(child >= 0);
    if (child == 0) {
      ::close(fds[0]);
      try {
        if (kill_it)
          nn::detail::set_checkpoint_write_hook([&](std::uint64_t written) {
            if (written < (std::uint64_t{3} << 20)) return;  // a few chunks in, then stall
            const char c = 'k';
            (void)!::write(fds[1], &c, 1);
            for (;;) ::pause();
          });
        nn::write_checkpoint(path, big);
      } catch (...) {
        ::_exit(2);
      }
      ::_exit(0);
    }
    ::close(fds[1]);
    int status = 0;
    if (kill_it) {
      pollfd p{fds[0], POLLIN, 0};
      REQUIRE(::poll(&p, 1, 60000) == 1);  // the child is mid-write
      ::kill(child, SIGKILL);
      REQUIRE(::waitpid(child, &status, 0) == child);
      CHECK(WIFSIGNALED(status));
      CHECK(WTERMSIG(status) == SIGKILL);
      // The partial temporary is there, the target is the old checkpoint, byte for byte.
      const std::string tmp = path + ".tmp." + std::to_string(child);
      REQUIRE(fs::exists(tmp));
      CHECK(fs::file_size(tmp) >= (std::uint64_t{3} << 20));
      CHECK(fs::file_size(tmp) < (std::uint64_t{16} << 20));
      CHECK(read_bytes(path) == old_bytes);
      Net fresh(5);
      nn::load_checkpoint(path, fresh);
      CHECK(nn::module_state(fresh) == nn::module_state(old_model));
      // The partial file itself is recognisably incomplete.
      CHECK(error_message([&] { nn::read_checkpoint(tmp); }).find("is truncated") != std::string::npos);
      fs::remove(tmp);
    } else {
      REQUIRE(::waitpid(child, &status, 0) == child);
      REQUIRE(WIFEXITED(status));
      CHECK(WEXITSTATUS(status) == 0);
      const nn::Checkpoint now = nn::read_checkpoint(path);
      CHECK(now.model.tensor("huge").numel() == 4 << 20);
      CHECK(now.model.tensor("huge").to_vector<float>()[12345] == 0.5f);
    }
    ::close(fds[0]);
    CHECK(dir.entries() == 1);
  }
}

// The fuzzer's report on 2026-12-02 ("a failed load changed the model") came from here: the model
// held a NaN from an earlier load, and StateDict's == said NaN != NaN, so an unchanged model looked
// changed. State compares by its bits now.
TEST_CASE("state holding NaN equals itself, and a failed load leaves it bit for bit unchanged") {
  TempDir dir;
  const std::string path = dir.file("nan.ckpt");
  Net net(1);
  nn::Adam adam(net.parameters(), {.lr = 0.1});
  nn::StepLR sched(adam, {.step_size = 1});
  train_steps(net, adam, 1);
  {
    NoGradGuard no_grad;
    net.fc1.weight.data<float>()[0] = std::numeric_limits<float>::quiet_NaN();
  }
  train_steps(net, adam, 1);  // the NaN reaches Adam's moments too
  const nn::StateDict model_before = nn::module_state(net), opt_before = adam.state_dict();
  CHECK(std::isnan(model_before.tensor("fc1.weight").data<float>()[0]));
  CHECK(nn::module_state(net) == model_before);
  CHECK(adam.state_dict() == opt_before);

  nn::save_checkpoint(path, net, {.optimizer = &adam});
  Net other(2);
  nn::Adam adam2(other.parameters(), {.lr = 0.1});
  nn::load_checkpoint(path, other, {.optimizer = &adam2});
  CHECK(nn::module_state(other) == model_before);  // a round trip keeps the NaN
  CHECK(adam2.state_dict() == opt_before);

  CHECK(error_message([&] { nn::load_checkpoint(path, net, {.optimizer = &adam, .scheduler = &sched}); }) ==
        "load_checkpoint '" + path + "': the file has no scheduler state");
  CHECK(nn::module_state(net) == model_before);
  CHECK(adam.state_dict() == opt_before);

  // Bits, not values: 0.0 and -0.0 are different states.
  nn::StateDict zero, negative_zero;
  zero.set("x", 0.0);
  negative_zero.set("x", -0.0);
  CHECK_FALSE(zero == negative_zero);
  zero.set("t", tensor({0.0f}));
  negative_zero.set("x", 0.0);
  negative_zero.set("t", tensor({-0.0f}));
  CHECK_FALSE(zero == negative_zero);
}

TEST_CASE("a saved optimizer hyperparameter of inf, NaN or below 0 is rejected, and nothing changes") {
  TempDir dir;
  const std::string path = dir.file("opt.ckpt"), bad = dir.file("bad.ckpt");
  const double inf = std::numeric_limits<double>::infinity(), nan = std::numeric_limits<double>::quiet_NaN();
  Net net(1);
  // One optimizer of each kind whose hyperparameters are checked by ">= 0" rules; a step taken, so
  // every part of the state (moments, steps) is there to stay unchanged.
  nn::SGD sgd(net.parameters(), {.lr = 0.1, .momentum = 0.9});
  nn::Adam adam(net.parameters(), {.lr = 0.1});
  nn::RMSprop rmsprop(net.parameters(), {.lr = 0.1, .momentum = 0.5});
  nn::Adagrad adagrad(net.parameters(), {.lr = 0.1, .lr_decay = 0.01});
  struct Case {
    nn::Optimizer* opt;
    const char* key;
    const char* name;  // as the error names it
  };
  const Case cases[] = {
      {&sgd, "group.0.lr", "group 0: lr"},
      {&sgd, "group.0.weight_decay", "group 0: weight_decay"},
      {&sgd, "hyper.momentum", "momentum"},
      {&adam, "group.0.lr", "group 0: lr"},
      {&adam, "hyper.eps", "eps"},
      {&rmsprop, "hyper.eps", "eps"},
      {&rmsprop, "hyper.momentum", "momentum"},
      {&adagrad, "hyper.lr_decay", "lr_decay"},
      {&adagrad, "hyper.initial_accumulator_value", "initial_accumulator_value"},
      {&adagrad, "hyper.eps", "eps"},
  };
  for (const Case& k : cases) {
    train_steps(net, *k.opt, 1);
    nn::save_checkpoint(path, net, {.optimizer = k.opt});
    train_steps(net, *k.opt, 1);  // the live state now differs from the file's
    const nn::StateDict model_before = nn::module_state(net), opt_before = k.opt->state_dict();
    for (const double value : {inf, -inf, nan, -1.0}) {
      nn::Checkpoint c = nn::read_checkpoint(path);
      REQUIRE(c.optimizer.contains(k.key));
      c.optimizer.set(k.key, value);
      nn::write_checkpoint(bad, c);
      const std::string shown = std::isnan(value) ? "nan" : value == inf ? "inf" : value == -inf ? "-inf" : "-1";
      const std::string in_state = std::string(k.key).rfind("group.", 0) == 0 ? " in the state" : "";
      INFO(k.opt->name(), " ", k.key, " = ", shown);
      CHECK(error_message([&] { nn::load_checkpoint(bad, net, {.optimizer = k.opt}); }) ==
            "load_checkpoint '" + bad + "': " + k.opt->name() + ": " + k.name + " must be finite and >= 0, got " +
                shown + in_state);
      CHECK(nn::module_state(net) == model_before);
      CHECK(k.opt->state_dict() == opt_before);
    }
  }
}
