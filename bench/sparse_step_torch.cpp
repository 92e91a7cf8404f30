// libtorch's twin of bench_tabular's sparse section (issue 12): one training step of a single
// embedding table (dim 16, sparse=True) with 2,048 lookups of 1,000 distinct rows, a sum loss and
// Adagrad or plain SGD, on a 1k-row and a 4M-row table alternating within each repeat. Those two are
// what libtorch's C++ API can step with a row-sparse gradient (SparseAdam is Python-only); its
// Adagrad is lazy on sparse gradients, as ladon's is. The traffic is bench_tabular's "matched" one: each
// step draws 1,000 distinct rows without replacement from the whole table, looks each up once and
// spreads the other 1,048 lookups over them, so both tables do the same arithmetic and the ratio is
// what the table's size alone costs. One thread (torch::set_num_threads(1)), as bench_tabular.
//
//   build/bench/sparse_step_torch [--repeats 3] [--steps 200]
//
// prints, per optimizer, the median ms per step of each table and the 4M / 1k ratio:
//
//   torch Adagrad  1000         0.123
//   torch Adagrad  4000000      0.150
//   torch Adagrad: 4M rows over 1k rows 1.22x
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <numeric>
#include <random>
#include <string>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;
constexpr std::int64_t kLookups = 2048, kDistinct = 1000, kDim = 16;

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

long flag(int argc, char** argv, const char* name, long fallback) {
  for (int i = 1; i + 1 < argc; ++i)
    if (std::strncmp(argv[i], "--", 2) == 0 && std::strcmp(argv[i] + 2, name) == 0) return std::stol(argv[i + 1]);
  return fallback;
}

// Ids for `steps` steps of matched traffic on a table of `rows` rows: a partial Fisher-Yates shuffle
// of a persistent pool gives each step a fresh uniform sample of kDistinct rows.
std::vector<torch::Tensor> matched_ids(std::int64_t rows, long steps, std::uint64_t seed) {
  std::mt19937_64 gen(seed);
  std::vector<std::int64_t> pool(static_cast<std::size_t>(rows));
  std::iota(pool.begin(), pool.end(), std::int64_t{0});
  std::vector<torch::Tensor> out;
  for (long s = 0; s < steps; ++s) {
    for (std::int64_t k = 0; k < kDistinct; ++k) {
      const std::int64_t j = k + static_cast<std::int64_t>(gen() % static_cast<std::uint64_t>(rows - k));
      std::swap(pool[static_cast<std::size_t>(k)], pool[static_cast<std::size_t>(j)]);
    }
    std::vector<std::int64_t> ids(static_cast<std::size_t>(kLookups));
    for (std::int64_t k = 0; k < kLookups; ++k)
      ids[static_cast<std::size_t>(k)] = pool[static_cast<std::size_t>(k < kDistinct ? k : gen() % kDistinct)];
    std::shuffle(ids.begin(), ids.end(), gen);
    out.push_back(torch::tensor(ids, torch::kInt64));
  }
  return out;
}

// Milliseconds per step, over `steps` steps after one untimed step (which allocates the state).
template <class Opt, class Options>
double step_ms(std::int64_t rows, long steps, Options options) {
  torch::manual_seed(1);
  torch::nn::Embedding table(torch::nn::EmbeddingOptions(rows, kDim).sparse(true));
  Opt opt(table->parameters(), options);
  const std::vector<torch::Tensor> ids = matched_ids(rows, steps + 1, 2);
  auto step = [&](const torch::Tensor& batch) {
    opt.zero_grad();
    torch::Tensor loss = table(batch).sum();
    loss.backward();
    opt.step();
  };
  step(ids[0]);
  const auto start = Clock::now();
  for (long s = 1; s <= steps; ++s) step(ids[static_cast<std::size_t>(s)]);
  return std::chrono::duration<double, std::milli>(Clock::now() - start).count() / static_cast<double>(steps);
}

}  // namespace

int main(int argc, char** argv) {
  torch::set_num_threads(1);
  const long repeats = flag(argc, argv, "repeats", 3), steps = flag(argc, argv, "steps", 200);
  std::printf(
      "torch sparse embedding step (2,048 lookups, 1,000 distinct rows, dim 16), 1k and 4M rows interleaved, "
      "ms, median of %ld:\n",
      repeats);
  for (int kind = 0; kind < 2; ++kind) {
    const char* name = kind == 0 ? "Adagrad" : "SGD";
    std::vector<double> ms[2];
    for (long r = 0; r < repeats; ++r)
      for (int big = 0; big < 2; ++big) {
        const std::int64_t rows = big ? 4000000 : 1000;
        ms[big].push_back(kind == 0 ? step_ms<torch::optim::Adagrad>(rows, steps, torch::optim::AdagradOptions(1e-3))
                                    : step_ms<torch::optim::SGD>(rows, steps, torch::optim::SGDOptions(1e-3)));
      }
    std::printf("  torch %-8s %-9s %8.3f\n", name, "1000", median(ms[0]));
    std::printf("  torch %-8s %-9s %8.3f\n", name, "4000000", median(ms[1]));
    std::printf("  torch %s: 4M rows over 1k rows %.2fx\n", name, median(ms[1]) / median(ms[0]));
  }
  return 0;
}
