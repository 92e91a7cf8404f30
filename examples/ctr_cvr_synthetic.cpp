// ESMM, AITM and a naive CVR model on a synthetic impression log whose true probabilities are
// known (data::impression_log: Zipf-popular users and items, latent user/item factors, a purchase
// only after a click), each AUC printed next to the ceiling the true probabilities reach.
//
//   build/examples/ctr_cvr_synthetic [--rows 1000000] [--epochs 2] [--threads 2]
//
// The log's first (1 - test) share of rows trains, the rest tests. Every model is the same
// feature-embedding front (16-wide "user" and "item" tables with row-sparse gradients, lazy Adam)
// before towers of 64-32:
//   ESMM   both towers over every impression: BCE(click, pCTR) + BCE(purchase, pCTR * pCVR);
//   AITM   click and purchase towers over every impression, the click tower's information passed
//          to the purchase one, plus the calibrator (alpha); its CVR reads pBuy / pClick;
//   naive  ESMM's CVR tower alone, trained by BCE on the clicked rows only (the selection-biased
//          way ESMM fixes), and evaluated like the others on every test impression.
// CVR is scored two ways: over every test impression against the counterfactual label "would buy
// if clicked" (which a synthetic log knows), and over the clicked test impressions only (what a real
// log allows, as in the ESMM paper). CTCVR is pCTR * pCVR (AITM: pBuy) against purchase.
#include <chrono>
#include <cstdio>
#include <sstream>

#include "common.h"
#include "ladon.h"

using namespace ladon;
using clock_type = std::chrono::steady_clock;

namespace {

struct Scores {
  std::vector<double> ctr, cvr, ctcvr;  // empty when the model does not predict it
};

struct Auc {
  double ctr, cvr_all, cvr_clicked, ctcvr;
};

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

Auc score(const Scores& s, const data::ImpressionLog& log, const std::vector<double>& clicked_mask) {
  return {s.ctr.empty() ? kNaN : mtl::auc(s.ctr, log.click), s.cvr.empty() ? kNaN : mtl::auc(s.cvr, log.converts),
          s.cvr.empty() ? kNaN : mtl::auc(s.cvr, log.converts, clicked_mask),
          s.ctcvr.empty() ? kNaN : mtl::auc(s.ctcvr, log.purchase)};
}

void print_row(const std::string& name, const Auc& a, double seconds, double samples_per_s) {
  auto cell = [](double v) {
    char buf[16];
    if (std::isnan(v))
      std::snprintf(buf, sizeof buf, "%8s", "-");
    else
      std::snprintf(buf, sizeof buf, "%8.4f", v);
    return std::string(buf);
  };
  std::printf("%-8s %s %s %s %s", name.c_str(), cell(a.ctr).c_str(), cell(a.cvr_all).c_str(),
              cell(a.cvr_clicked).c_str(), cell(a.ctcvr).c_str());
  if (seconds > 0) std::printf("   %6.1f s  %8.0f samples/s", seconds, samples_per_s);
  std::printf("\n");
  std::fflush(stdout);
}

// The log's rows as a copy holding only those rows (the true probabilities and labels too).
data::ImpressionLog slice(const data::ImpressionLog& log, std::int64_t begin, std::int64_t end) {
  data::ImpressionLog out;
  std::vector<std::int64_t> rows;
  for (std::int64_t r = begin; r < end; ++r) rows.push_back(r);
  out.data = data::take_rows(log.data, rows);
  auto part = [&](const std::vector<double>& v) { return std::vector<double>(v.begin() + begin, v.begin() + end); };
  out.p_click = part(log.p_click), out.p_convert = part(log.p_convert), out.converts = part(log.converts);
  out.click = part(log.click), out.purchase = part(log.purchase);
  return out;
}

std::unique_ptr<mtl::FeatureModel> make_model(const std::string& kind, const data::ImpressionLog& log,
                                              const examples::Flags& flags, Generator& gen) {
  std::vector<nn::FieldSpec> fields;
  for (const auto& f : log.data.fields) fields.push_back(f.spec);
  nn::FeatureEmbedding front({.fields = fields, .dim = flags.integer("dim"), .sparse = true}, gen);
  const std::int64_t in = front.out_dim();
  const std::vector<std::int64_t> tower = {64, 32};
  if (kind == "AITM")
    return std::make_unique<mtl::FeatureModel>(
        std::move(front),
        mtl::AITM({.in = in,
                   .tower_hidden = tower,
                   .tasks = {{.name = "click", .out = 1, .tower_hidden = {}, .kind = mtl::TaskKind::binary},
                             {.name = "purchase", .out = 1, .tower_hidden = {}, .kind = mtl::TaskKind::binary}}},
                  gen));
  return std::make_unique<mtl::FeatureModel>(std::move(front), mtl::ESMM({.in = in, .tower_hidden = tower}, gen));
}

// Trains one kind of model and returns its test scores.
Scores run(const std::string& kind, const data::ImpressionLog& train, const data::ImpressionLog& test,
           const examples::Flags& flags, double& seconds, std::int64_t& samples) {
  Generator gen(static_cast<std::uint64_t>(flags.integer("seed")) * 31 + 7);
  const auto model = make_model(kind, train, flags, gen);
  nn::Adam optimizer(model->parameters(), {.lr = flags.real("lr")});
  // The naive model sees only the clicked rows, labelled by purchase (= converts there).
  data::TabularDataset rows = train.data;
  if (kind == "naive") {
    std::vector<std::int64_t> clicked;
    for (std::size_t r = 0; r < train.click.size(); ++r)
      if (train.click[r] == 1.0) clicked.push_back(static_cast<std::int64_t>(r));
    rows = data::take_rows(train.data, clicked);
  }
  data::TabularLoader loader(rows, {.batch = flags.integer("batch"), .shuffle = true,
                                    .seed = static_cast<std::uint64_t>(flags.integer("seed"))});
  const double alpha = flags.real("alpha");
  model->train();
  const auto start = clock_type::now();
  samples = 0;
  for (long epoch = 0; epoch < flags.integer("epochs"); ++epoch)
    for (auto& batch : loader) {
      const std::vector<Tensor> out = (*model)(batch.features);
      Tensor loss;
      if (kind == "ESMM")
        loss = mtl::esmm_loss(out[0], out[1], batch.y[0], batch.y[1]);
      else if (kind == "AITM")
        loss = nn::binary_cross_entropy_with_logits(out[0], batch.y[0]) +
               nn::binary_cross_entropy_with_logits(out[1], batch.y[1]) + mtl::aitm_calibration(out, alpha);
      else
        loss = nn::binary_cross_entropy_with_logits(out[1], batch.y[1]);
      optimizer.zero_grad();
      loss.backward();
      optimizer.step();
      samples += batch.rows;
    }
  seconds = std::chrono::duration<double>(clock_type::now() - start).count();

  model->eval();
  NoGradGuard no_grad;
  Scores s;
  for (auto& batch : data::TabularLoader(test.data, {.batch = 8192})) {
    const std::vector<Tensor> out = (*model)(batch.features);
    const std::vector<float> a = sigmoid(out[0]).to_vector<float>(), b = sigmoid(out[1]).to_vector<float>();
    for (std::size_t i = 0; i < a.size(); ++i) {
      if (kind == "ESMM") {
        s.ctr.push_back(a[i]), s.cvr.push_back(b[i]), s.ctcvr.push_back(static_cast<double>(a[i]) * b[i]);
      } else if (kind == "AITM") {
        s.ctr.push_back(a[i]), s.ctcvr.push_back(b[i]);
        s.cvr.push_back(static_cast<double>(b[i]) / std::max(static_cast<double>(a[i]), 1e-12));
      } else {
        s.cvr.push_back(b[i]);
      }
    }
  }
  return s;
}

}  // namespace

int main(int argc, char** argv) try {
  const examples::Flags flags(argc, argv,
                              {{"rows", "1000000"},
                               {"users", "100000"},
                               {"items", "20000"},
                               {"test", "0.2"},
                               {"epochs", "2"},
                               {"batch", "2048"},
                               {"lr", "0.002"},
                               {"dim", "16"},
                               {"alpha", "0.6"},
                               {"seed", "1"},
                               {"threads", "2"},
                               {"models", "ESMM,AITM,naive"}},
                              "ctr_cvr_synthetic: ESMM, AITM and naive CVR on a synthetic impression log with known "
                              "true probabilities");
  set_num_threads(static_cast<int>(flags.integer("threads")));
  const auto seed = static_cast<std::uint64_t>(flags.integer("seed"));
  const data::ImpressionLog log = data::impression_log(
      {.rows = flags.integer("rows"), .users = flags.integer("users"), .items = flags.integer("items"), .seed = seed});
  const auto n = static_cast<std::int64_t>(log.click.size());
  const auto n_train = static_cast<std::int64_t>(static_cast<double>(n) * (1.0 - flags.real("test")));
  const data::ImpressionLog train = slice(log, 0, n_train), test = slice(log, n_train, n);
  double clicks = 0, purchases = 0;
  for (std::size_t r = 0; r < log.click.size(); ++r) clicks += log.click[r], purchases += log.purchase[r];
  std::printf("impression log: %lld rows (%lld train, %lld test), %lld users, %lld items; CTR %.3f, CVR %.3f, "
              "CTCVR %.4f\n",
              static_cast<long long>(n), static_cast<long long>(n_train), static_cast<long long>(n - n_train),
              static_cast<long long>(flags.integer("users")), static_cast<long long>(flags.integer("items")),
              clicks / static_cast<double>(n), purchases / std::max(clicks, 1.0), purchases / static_cast<double>(n));

  std::printf("test AUC after %ld epochs, %lld threads   CVR all: every impression against \"would buy if clicked\"; "
              "CVR clicked: clicked impressions only\n",
              flags.integer("epochs"), static_cast<long long>(flags.integer("threads")));
  std::printf("%-8s %8s %8s %8s %8s\n", "model", "CTR", "CVR all", "CVR clk", "CTCVR");
  std::vector<double> clicked_mask = test.click;
  std::vector<double> p_ctcvr(test.p_click.size());
  for (std::size_t r = 0; r < p_ctcvr.size(); ++r) p_ctcvr[r] = test.p_click[r] * test.p_convert[r];
  print_row("ceiling", score({test.p_click, test.p_convert, p_ctcvr}, test, clicked_mask), 0, 0);
  std::stringstream list(flags.str("models"));
  for (std::string kind; std::getline(list, kind, ',');) {
    LADON_CHECK(kind == "ESMM" || kind == "AITM" || kind == "naive", "ctr_cvr_synthetic", "unknown model '", kind,
                "' (ESMM, AITM, naive)");
    double seconds = 0;
    std::int64_t samples = 0;
    const Scores s = run(kind, train, test, flags, seconds, samples);
    print_row(kind, score(s, test, clicked_mask), seconds, static_cast<double>(samples) / seconds);
  }
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "ctr_cvr_synthetic: %s\n", e.what());
  return 1;
}
