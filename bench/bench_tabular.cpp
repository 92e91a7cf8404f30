// Two measurements for tabular / recommendation training (issue 12):
//  1. CSV into columns: CsvReader (libcsv) over a generated census-like file, text columns only
//     and with every numeric column converted (CsvChunk::number), in MB/s on one core.
//  2. One training step of a single embedding table with 2,048 lookups (dim 16, sum loss, Adam):
//     dense gradients against row-sparse ones (EmbeddingOptions::sparse), tables of 1k, 1M, 4M rows.
// Each figure is the median of --repeats runs; compare ratios within one run (a shared machine).
//
//   build/bench/bench_tabular [--mb 200] [--repeats 3] [--steps 20]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "ladon.h"

using namespace ladon;
using clock_type = std::chrono::steady_clock;

namespace {

double seconds_since(clock_type::time_point t) { return std::chrono::duration<double>(clock_type::now() - t).count(); }

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

long flag(int argc, char** argv, const std::string& name, long fallback) {
  for (int i = 1; i + 1 < argc; ++i)
    if (argv[i][0] == '-' && argv[i][1] == '-' && name == argv[i] + 2) return std::stol(argv[i + 1]);
  return fallback;
}

// Rows like adult.data: 6 numeric and 8 text fields, ", " between them, some quoted, some "?".
std::string write_csv(std::int64_t megabytes) {
  const std::string path = (std::filesystem::temp_directory_path() / "ladon-bench-tabular.csv").string();
  std::ofstream out(path, std::ios::binary);
  const char* words[] = {"Private", "Self-emp-not-inc", "Bachelors", "HS-grad", "\"Married, civ\"", "?", "Sales",
                         "Exec-managerial", "White", "Male", "United-States", "Husband"};
  std::uint64_t x = 88172645463325252ull;
  auto next = [&] {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return x;
  };
  std::string row;
  std::int64_t bytes = 0;
  while (bytes < megabytes * 1000000) {
    row.clear();
    for (int f = 0; f < 14; ++f) {
      if (f > 0) row += ", ";
      if (f % 2 == 0 && f < 12)
        row += std::to_string(next() % 100000);
      else
        row += words[next() % 12];
    }
    row += '\n';
    out << row;
    bytes += static_cast<std::int64_t>(row.size());
  }
  return path;
}

void bench_csv(long megabytes, long repeats) {
  const std::string path = write_csv(megabytes);
  const double mb = static_cast<double>(std::filesystem::file_size(path)) / 1e6;
  std::vector<std::string> names;
  for (int f = 0; f < 14; ++f) names.push_back(std::string(1, 'c').append(std::to_string(f)));
  std::vector<double> text_rate, number_rate;
  double checksum = 0;
  for (long r = 0; r < repeats; ++r) {
    for (int convert = 0; convert < 2; ++convert) {
      const auto start = clock_type::now();
      data::CsvReader reader(path, {.header = false, .columns = names});
      data::CsvChunk chunk;
      std::int64_t rows = 0;
      while (reader.next(chunk)) {
        rows += chunk.rows();
        if (convert)
          for (std::int64_t c = 0; c < 12; c += 2)
            for (std::int64_t i = 0; i < chunk.rows(); ++i) checksum += chunk.number(c, i);
      }
      (convert ? number_rate : text_rate).push_back(mb / seconds_since(start));
      checksum += static_cast<double>(rows);
    }
  }
  std::filesystem::remove(path);
  std::printf("csv  %.0f MB, 14 columns: into text columns %.0f MB/s; with the 6 numeric columns converted %.0f MB/s"
              "  (median of %ld; checksum %.0f)\n",
              mb, median(text_rate), median(number_rate), repeats, checksum);
}

// Milliseconds per step: zero_grad, lookup 2,048 rows, sum, backward, Adam.
double embedding_step_ms(std::int64_t rows, bool sparse, long steps) {
  Generator gen(1);
  nn::Embedding table(rows, 16, {.sparse = sparse}, gen);
  nn::Adam opt(table.parameters(), {.lr = 1e-3});
  std::vector<std::int64_t> picks;
  for (float u : rand({2048}, gen).to_vector<float>())
    picks.push_back(std::min(rows - 1, static_cast<std::int64_t>(u * static_cast<float>(rows))));
  const Tensor ids = tensor(picks, {2048});
  auto step = [&] {
    opt.zero_grad();
    sum(table(ids)).backward();
    opt.step();
  };
  step();  // first step allocates Adam's moments
  const auto start = clock_type::now();
  for (long s = 0; s < steps; ++s) step();
  return seconds_since(start) * 1000 / static_cast<double>(steps);
}

void bench_embedding(long repeats, long steps) {
  std::printf("embedding step (2,048 lookups, dim 16, Adam), ms, median of %ld:\n", repeats);
  std::printf("  %-9s %10s %10s %8s\n", "rows", "dense", "sparse", "ratio");
  std::vector<double> sparse_small;
  for (std::int64_t rows : {std::int64_t{1000}, std::int64_t{1000000}, std::int64_t{4000000}}) {
    std::vector<double> dense, sparse;
    for (long r = 0; r < repeats; ++r) {
      dense.push_back(embedding_step_ms(rows, false, rows > 1000 ? std::max(1L, steps / 10) : steps));
      sparse.push_back(embedding_step_ms(rows, true, steps));
    }
    std::printf("  %-9lld %10.3f %10.3f %7.1fx\n", static_cast<long long>(rows), median(dense), median(sparse),
                median(dense) / median(sparse));
    sparse_small.push_back(median(sparse));
  }
  std::printf("  sparse step, 4M rows over 1k rows: %.2fx (target <= 1.2x)\n", sparse_small[2] / sparse_small[0]);
}

}  // namespace

int main(int argc, char** argv) try {
  set_num_threads(1);
  const long repeats = flag(argc, argv, "repeats", 3);
  bench_csv(flag(argc, argv, "mb", 200), repeats);
  bench_embedding(repeats, flag(argc, argv, "steps", 20));
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "bench_tabular: %s\n", e.what());
  return 1;
}
