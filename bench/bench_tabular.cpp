// Four measurements for tabular / recommendation training (issue 12):
//  1. csv: CsvReader (libcsv) over a generated census-like file into text columns, and with every
//     numeric column converted too (CsvChunk::number), in MB/s on one core.
//  2. embedding: one training step of a single embedding table with 2,048 lookups (dim 16, sum
//     loss, Adam): dense gradients against row-sparse ones (EmbeddingOptions::sparse), tables of
//     1k, 1M and 4M rows, and the forward / backward / optimizer split of the sparse step.
//  3. mmoe: training throughput on the 1M-row synthetic impression log (data::impression_log:
//     100k users, 20k items): FeatureEmbedding with 16-wide sparse "user" and "item" tables, an
//     MMoE of 4 experts (32 -> 64, ReLU) with click and purchase towers (32), BCE per task summed,
//     Adam, batch 2048, shuffled by TabularLoader: samples per second over whole epochs (batch
//     gathering included) on 1 and 2 threads.
//  4. sparse: the sparse step of 2. alone (matched traffic), 1k and 4M rows alternating, with Adam,
//     Adagrad and SGD, and the ratio the target is about.
// Each figure is the median of --repeats runs; compare ratios within one run (a shared machine).
//
//   build/bench/bench_tabular [--only csv,embedding,sparse,mmoe] [--mb 200] [--repeats 3] [--steps 200]
//                             [--rows 1000000] [--epochs 1]
#include <algorithm>
#include <chrono>
#include <cmath>
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

const char* flag_text(int argc, char** argv, const std::string& name) {
  for (int i = 1; i + 1 < argc; ++i)
    if (argv[i][0] == '-' && argv[i][1] == '-' && name == argv[i] + 2) return argv[i + 1];
  return nullptr;
}

long flag(int argc, char** argv, const std::string& name, long fallback) {
  const char* text = flag_text(argc, argv, name);
  return text ? std::stol(text) : fallback;
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

struct StepTimes {
  double total = 0, forward = 0, backward = 0, optimizer = 0;  // ms per step
};

// The ids of one step's 2,048 lookups, drawn afresh for every step (a real loader never repeats a
// batch, and a repeated one keeps a big table's rows and moments warm in L2). Two kinds of traffic:
//   matched  every step touches exactly kDistinct = 1,000 distinct rows, chosen uniformly without
//            replacement from the whole table (all of a 1k-row table, a fresh scattered 1,000 of a
//            4M-row one), each looked up once and the other 1,048 lookups spread uniformly over
//            them. Both tables then do the same work (the same sort, sums, copies and optimizer
//            arithmetic on 1,000 rows): the ratio is what the table's size alone costs (cache and
//            TLB misses), which is what "within 1.2x" asks of a sparse step. Uniform draws with
//            replacement would give the 1k table ~870 distinct rows and the 4M one ~2,048, so 2.35x
//            the row updates would be counted as the big table's fault.
//   zipf     2,048 independent draws, P(id = k) ~ (k + 1)^-1.1 (data::impression_log's law; id 0
//            the most popular, as in a vocabulary sorted by count): a recommendation log's traffic,
//            where the distinct count is whatever the law gives (printed beside the time).
enum class Traffic { matched, zipf };
constexpr std::int64_t kLookups = 2048, kDistinct = 1000;

class IdSource {
 public:
  IdSource(std::int64_t rows, Traffic traffic, std::uint64_t seed) : rows_(rows), traffic_(traffic), gen_(seed) {
    if (traffic == Traffic::matched) {
      pool_.resize(static_cast<std::size_t>(rows));
      for (std::int64_t r = 0; r < rows; ++r) pool_[static_cast<std::size_t>(r)] = r;
    } else {
      cdf_.resize(static_cast<std::size_t>(rows));
      double total = 0;
      for (std::int64_t k = 0; k < rows; ++k) cdf_[static_cast<std::size_t>(k)] = total += std::pow(k + 1.0, -1.1);
      for (double& c : cdf_) c /= total;
    }
  }

  Tensor next() {
    std::vector<std::int64_t> ids(static_cast<std::size_t>(kLookups));
    if (traffic_ == Traffic::matched) {
      // A partial Fisher-Yates shuffle of the persistent pool: its first kDistinct entries are a
      // uniform sample without replacement, fresh each call.
      for (std::int64_t k = 0; k < kDistinct; ++k) {
        const auto j = k + static_cast<std::int64_t>(gen_.below(static_cast<std::uint64_t>(rows_ - k)));
        std::swap(pool_[static_cast<std::size_t>(k)], pool_[static_cast<std::size_t>(j)]);
      }
      for (std::int64_t k = 0; k < kLookups; ++k)
        ids[static_cast<std::size_t>(k)] =
            pool_[static_cast<std::size_t>(k < kDistinct ? k : static_cast<std::int64_t>(gen_.below(kDistinct)))];
      for (std::int64_t k = kLookups - 1; k > 0; --k)  // the repeats are not all at the end
        std::swap(ids[static_cast<std::size_t>(k)], ids[gen_.below(static_cast<std::uint64_t>(k + 1))]);
    } else {
      for (std::int64_t& id : ids)
        id = std::min<std::int64_t>(std::upper_bound(cdf_.begin(), cdf_.end(), gen_.uniform()) - cdf_.begin(), rows_ - 1);
    }
    return tensor(ids, {kLookups});
  }

 private:
  std::int64_t rows_;
  Traffic traffic_;
  Generator gen_;
  std::vector<std::int64_t> pool_;
  std::vector<double> cdf_;
};

std::int64_t distinct_rows(const Tensor& ids) {
  std::vector<std::int64_t> v = ids.to_vector<std::int64_t>();
  std::sort(v.begin(), v.end());
  return std::unique(v.begin(), v.end()) - v.begin();
}

// Milliseconds per step: zero_grad, lookup 2,048 rows, sum, backward, Adam, with fresh ids each
// step (all drawn before the clock starts). `distinct`: the mean distinct rows per timed step.
template <class Opt = nn::Adam>
StepTimes embedding_step_ms(std::int64_t rows, bool sparse, Traffic traffic, long steps, double* distinct = nullptr) {
  Generator gen(1);
  nn::Embedding table(rows, 16, {.sparse = sparse}, gen);
  Opt opt(table.parameters(), {.lr = 1e-3});
  IdSource source(rows, traffic, 2);
  std::vector<Tensor> ids;
  for (long s = 0; s <= steps; ++s) ids.push_back(source.next());
  if (distinct) {
    double total = 0;
    for (long s = 1; s <= steps; ++s) total += static_cast<double>(distinct_rows(ids[static_cast<std::size_t>(s)]));
    *distinct = total / static_cast<double>(steps);
  }
  StepTimes t;
  auto step = [&](const Tensor& batch) {
    auto at = clock_type::now();
    opt.zero_grad();
    Tensor loss = sum(table(batch));
    t.forward += seconds_since(at), at = clock_type::now();
    loss.backward();
    t.backward += seconds_since(at), at = clock_type::now();
    opt.step();
    t.optimizer += seconds_since(at);
  };
  step(ids[0]);  // the first step allocates the optimizer's state
  t = {};
  const auto start = clock_type::now();
  for (long s = 1; s <= steps; ++s) step(ids[static_cast<std::size_t>(s)]);
  const double per = 1000 / static_cast<double>(steps);
  return {seconds_since(start) * per, t.forward * per, t.backward * per, t.optimizer * per};
}

void bench_embedding(long repeats, long steps) {
  std::printf("embedding step (2,048 lookups, fresh ids each step, dim 16, Adam), ms, median of %ld:\n", repeats);
  const std::int64_t sizes[] = {1000, 1000000, 4000000};
  std::printf("  matched traffic (1,000 distinct rows per step in every table):\n");
  std::printf("  %-9s %10s %10s %8s   sparse: %8s %8s %8s\n", "rows", "dense", "sparse", "ratio", "forward",
              "backward", "optim");
  std::vector<double> matched;
  for (std::int64_t rows : sizes) {
    std::vector<double> dense, sparse, fw, bw, op;
    for (long r = 0; r < repeats; ++r) {
      dense.push_back(
          embedding_step_ms(rows, false, Traffic::matched, rows > 1000 ? std::max(1L, steps / 20) : steps).total);
      const StepTimes t = embedding_step_ms(rows, true, Traffic::matched, steps);
      sparse.push_back(t.total), fw.push_back(t.forward), bw.push_back(t.backward), op.push_back(t.optimizer);
    }
    std::printf("  %-9lld %10.3f %10.3f %7.1fx           %8.3f %8.3f %8.3f\n", static_cast<long long>(rows),
                median(dense), median(sparse), median(dense) / median(sparse), median(fw), median(bw), median(op));
    matched.push_back(median(sparse));
  }
  std::printf("  sparse step, 4M rows over 1k rows: %.2fx (target <= 1.2x)\n", matched[2] / matched[0]);
  std::printf("  zipf traffic (s = 1.1, id 0 the most popular), sparse only:\n");
  std::printf("  %-9s %10s %14s\n", "rows", "sparse", "distinct rows");
  std::vector<double> zipf;
  for (std::int64_t rows : sizes) {
    std::vector<double> sparse;
    double distinct = 0;
    for (long r = 0; r < repeats; ++r) sparse.push_back(embedding_step_ms(rows, true, Traffic::zipf, steps, &distinct).total);
    std::printf("  %-9lld %10.3f %14.0f\n", static_cast<long long>(rows), median(sparse), distinct);
    zipf.push_back(median(sparse));
  }
  std::printf("  zipf sparse step, 4M rows over 1k rows: %.2fx\n", zipf[2] / zipf[0]);
}

// The MMoE both model benchmarks train: 4 experts of 64 over the front's output, click and
// purchase towers of 32.
mtl::FeatureModel click_purchase_mmoe(nn::FeatureEmbedding front, Generator& gen) {
  const std::int64_t in = front.out_dim();
  return mtl::FeatureModel(
      std::move(front),
      mtl::MMoE({.in = in,
                 .experts = 4,
                 .expert_hidden = {64},
                 .tasks = {{.name = "click", .out = 1, .tower_hidden = {32}, .kind = mtl::TaskKind::binary},
                           {.name = "purchase", .out = 1, .tower_hidden = {32}, .kind = mtl::TaskKind::binary}}},
                gen));
}

// Milliseconds per training step of an MMoE (4 experts of 64, click and purchase towers of 32,
// BCE summed, Adam) over one sparse 16-wide "user" table of `rows` rows and 16 numeric inputs, batch
// 2,048 with the matched traffic's ids: what the table's size costs a whole training step rather
// than the embedding alone.
double mmoe_step_ms(std::int64_t rows, long steps) {
  Generator gen(1);
  nn::FeatureEmbedding front({.fields = {{.name = "user", .cardinality = rows},
                                         {.name = "dense", .kind = nn::FieldKind::numeric, .width = 16}},
                              .dim = 16,
                              .sparse = true},
                             gen);
  mtl::FeatureModel model = click_purchase_mmoe(std::move(front), gen);
  nn::Adam opt(model.parameters(), {.lr = 1e-3});
  IdSource source(rows, Traffic::matched, 2);
  const Tensor dense = randn({kLookups, 16}, gen);
  const Tensor click = lt(rand({kLookups, 1}, gen), scalar(0.3));
  const Tensor purchase = lt(rand({kLookups, 1}, gen), scalar(0.05));
  std::vector<nn::Features> batches(static_cast<std::size_t>(steps + 1));
  for (nn::Features& f : batches) {
    f.set("user", {.ids = source.next(), .offsets = Tensor(), .values = Tensor()});
    f.set("dense", {.ids = Tensor(), .offsets = Tensor(), .values = dense});
  }
  auto step = [&](const nn::Features& features) {
    const std::vector<Tensor> out = model(features);
    Tensor loss =
        nn::binary_cross_entropy_with_logits(out[0], click) + nn::binary_cross_entropy_with_logits(out[1], purchase);
    opt.zero_grad();
    loss.backward();
    opt.step();
  };
  step(batches[0]);
  const auto start = clock_type::now();
  for (long s = 1; s <= steps; ++s) step(batches[static_cast<std::size_t>(s)]);
  return seconds_since(start) * 1000 / static_cast<double>(steps);
}

// The sparse step alone, matched traffic, the 1k-row and the 4M-row table alternating within each
// repeat (so a change in the machine's load hits both), with Adam, with Adagrad (lazy: one state row
// per table row instead of Adam's two) and with plain SGD (no state: the table's rows alone).
// bench/sparse_step_torch times libtorch's Adagrad and SGD on the same traffic.
void bench_sparse(long repeats, long steps) {
  std::printf(
      "sparse embedding step (2,048 lookups, 1,000 distinct rows, dim 16), 1k and 4M rows interleaved, ms, "
      "median of %ld:\n",
      repeats);
  std::printf("  %-8s %-9s %8s %8s %8s %8s\n", "optim", "rows", "step", "forward", "backward", "optim");
  const char* names[] = {"Adam", "Adagrad", "SGD"};
  for (int kind = 0; kind < 3; ++kind) {
    std::vector<double> parts[2][4];
    for (long r = 0; r < repeats; ++r)
      for (int big = 0; big < 2; ++big) {
        const std::int64_t rows = big ? 4000000 : 1000;
        const StepTimes t = kind == 0   ? embedding_step_ms<nn::Adam>(rows, true, Traffic::matched, steps)
                            : kind == 1 ? embedding_step_ms<nn::Adagrad>(rows, true, Traffic::matched, steps)
                                        : embedding_step_ms<nn::SGD>(rows, true, Traffic::matched, steps);
        parts[big][0].push_back(t.total), parts[big][1].push_back(t.forward);
        parts[big][2].push_back(t.backward), parts[big][3].push_back(t.optimizer);
      }
    StepTimes med[2];
    for (int big = 0; big < 2; ++big) {
      med[big] = {median(parts[big][0]), median(parts[big][1]), median(parts[big][2]), median(parts[big][3])};
      std::printf("  %-8s %-9s %8.3f %8.3f %8.3f %8.3f\n", names[kind], big ? "4000000" : "1000", med[big].total,
                  med[big].forward, med[big].backward, med[big].optimizer);
    }
    std::printf("  %s: 4M rows over 1k rows %.2fx (target <= 1.2x)\n", names[kind], med[1].total / med[0].total);
  }
  std::vector<double> model_ms[2];
  for (long r = 0; r < repeats; ++r)
    for (int big = 0; big < 2; ++big) model_ms[big].push_back(mmoe_step_ms(big ? 4000000 : 1000, steps / 4));
  std::printf("  the same ids into an MMoE step (user table 16 wide + 16 numeric inputs, 4 experts of 64, Adam):\n");
  std::printf("  %-8s %-9s %8.3f\n  %-8s %-9s %8.3f\n", "MMoE", "1000", median(model_ms[0]), "MMoE", "4000000",
              median(model_ms[1]));
  std::printf("  MMoE: 4M rows over 1k rows %.2fx (target <= 1.2x)\n", median(model_ms[1]) / median(model_ms[0]));
}

// Samples per second of `epochs` whole epochs of the MMoE on the impression log.
double mmoe_samples_per_s(const data::ImpressionLog& log, long epochs, std::uint64_t seed) {
  Generator gen(seed);
  std::vector<nn::FieldSpec> fields;
  for (const auto& f : log.data.fields) fields.push_back(f.spec);
  nn::FeatureEmbedding front({.fields = fields, .dim = 16, .sparse = true}, gen);
  mtl::FeatureModel model = click_purchase_mmoe(std::move(front), gen);
  nn::Adam opt(model.parameters(), {.lr = 1e-3});
  data::TabularLoader loader(log.data, {.batch = 2048, .shuffle = true, .seed = seed});
  std::int64_t samples = 0;
  const auto start = clock_type::now();
  for (long e = 0; e < epochs; ++e)
    for (auto& batch : loader) {
      const std::vector<Tensor> out = model(batch.features);
      Tensor loss = nn::binary_cross_entropy_with_logits(out[0], batch.y[0]) +
                    nn::binary_cross_entropy_with_logits(out[1], batch.y[1]);
      opt.zero_grad();
      loss.backward();
      opt.step();
      samples += batch.rows;
    }
  return static_cast<double>(samples) / seconds_since(start);
}

void bench_mmoe(long rows, long epochs, long repeats) {
  const data::ImpressionLog log = data::impression_log({.rows = rows, .seed = 1});
  std::printf("mmoe on the impression log (%ld rows, user/item tables 16 wide, sparse; 4 experts of 64; batch 2048; "
              "Adam), %ld epoch(s), median of %ld:\n",
              rows, epochs, repeats);
  for (int threads : {1, 2}) {
    set_num_threads(threads);
    std::vector<double> rate;
    for (long r = 0; r < repeats; ++r) rate.push_back(mmoe_samples_per_s(log, epochs, static_cast<std::uint64_t>(r + 1)));
    std::printf("  threads %d: %9.0f samples/s%s\n", threads, median(rate), threads == 2 ? "  (target >= 500000)" : "");
  }
  set_num_threads(1);
}

}  // namespace

int main(int argc, char** argv) try {
  set_num_threads(1);
  const long repeats = flag(argc, argv, "repeats", 3);
  const std::string only = flag_text(argc, argv, "only") ? flag_text(argc, argv, "only") : "csv,embedding,sparse,mmoe";
  auto wanted = [&](const char* section) { return ("," + only + ",").find(std::string(",") + section + ",") != std::string::npos; };
  if (wanted("csv")) bench_csv(flag(argc, argv, "mb", 200), repeats);
  if (wanted("embedding")) bench_embedding(repeats, flag(argc, argv, "steps", 200));
  if (wanted("sparse")) bench_sparse(repeats, flag(argc, argv, "steps", 200));
  if (wanted("mmoe")) bench_mmoe(flag(argc, argv, "rows", 1000000), flag(argc, argv, "epochs", 1), repeats);
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "bench_tabular: %s\n", e.what());
  return 1;
}
