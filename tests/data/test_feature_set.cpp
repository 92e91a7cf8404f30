#include <doctest/doctest.h>

#include <cmath>
#include <fstream>

#include "helpers.h"
#include "ladon.h"

using namespace ladon;
using namespace ladon::data;
using namespace ladon::testing;

namespace {
const TabularDataset::Field& field(const TabularDataset& ds, const std::string& name) {
  for (const auto& f : ds.fields)
    if (f.spec.name == name) return f;
  FAIL("no field " << name);
  throw 0;
}
FeatureSet census_like() {
  FeatureSet fs;
  fs.categorical("job", {.min_count = 2})
      .categorical("city", {.hash_buckets = 4})
      .numeric("gain", {.log1p = true, .missing_indicator = true})
      .numeric("age", {.buckets = 2})
      .multi_categorical("tags", {.separator = '|'})
      .label("rich", "income", {.map = {{">50K", 1}, {"<=50K", 0}}});
  return fs;
}
const char* kTrain =
    "job,city,gain,age,tags,income\n"
    "a,x,0,20,p|q,>50K\n"
    "b,y,e,30,q,<=50K\n"    // 'e' replaced below per test
    "a,x,?,40,,?\n"
    "c,z,3,50,p|r|p,<=50K\n";
}  // namespace

TEST_CASE("data/feature_set: fitted vocabulary, hashing, log1p + standardise, quantile buckets, bags, labels") {
  TempDir dir;
  std::string text = kTrain;
  text.replace(text.find(",e,"), 3, ",1,");
  const CsvChunk train = read_csv(write_text(dir, "train.csv", text));
  FeatureSet fs = census_like();
  fs.fit(train);
  // job: a twice, b and c once; min_count 2 keeps only a -> id 2; b, c -> 0 (OOV); missing -> 1.
  CHECK(fs.vocabulary("job") == std::vector<std::string>{"a"});
  const TabularDataset ds = fs.transform(train);
  CHECK(ds.rows == 4);
  CHECK(field(ds, "job").ids.to_vector<std::int64_t>() == std::vector<std::int64_t>{2, 0, 2, 0});
  const auto city = field(ds, "city").ids.to_vector<std::int64_t>();
  CHECK(city[0] == city[2]);
  for (auto id : city) CHECK((id >= 1 && id <= 4));
  // gain: log1p of 0, 1, 3 = 0, ln 2, ln 4; mean ln 2; population std sqrt(((ln2)^2 + 0 + (ln2)^2) / 3).
  const double l2 = std::log(2.0), sd = std::sqrt(2 * l2 * l2 / 3);
  const auto gain = field(ds, "gain").values.to_vector<float>();
  REQUIRE(gain.size() == 8);
  CHECK(gain[0] == doctest::Approx(-l2 / sd));
  CHECK(gain[1] == 0);
  CHECK(gain[2] == 0);  // missing: the mean, and the indicator says so
  CHECK(gain[3] == 0);
  CHECK(gain[4] == 0);
  CHECK(gain[5] == 1);
  CHECK(gain[6] == doctest::Approx(l2 / sd));
  // age, 2 buckets: boundary at the sorted value with index 1 * 4 / 2 = 2, i.e. 40: 20, 30 -> 1; 40, 50 -> 2.
  CHECK(field(ds, "age").ids.to_vector<std::int64_t>() == std::vector<std::int64_t>{1, 1, 2, 2});
  CHECK(field(ds, "age").spec.cardinality == 3);
  // tags: p 3 times, q 2, r 1 -> p 2, q 3, r 4; bags [p q] [q] [] [p r p].
  CHECK(fs.vocabulary("tags") == std::vector<std::string>{"p", "q", "r"});
  CHECK(field(ds, "tags").ids.to_vector<std::int64_t>() == std::vector<std::int64_t>{2, 3, 3, 2, 4, 2});
  CHECK(field(ds, "tags").offsets.to_vector<std::int64_t>() == std::vector<std::int64_t>{0, 2, 3, 3, 6});
  CHECK(ds.labels[0].to_vector<float>() == std::vector<float>{1, 0, 0, 0});
  CHECK(ds.masks[0].to_vector<float>() == std::vector<float>{1, 1, 0, 1});
  CHECK(ds.task_names == std::vector<std::string>{"rich"});
  const auto specs = fs.fields();
  REQUIRE(specs.size() == 5);
  CHECK(specs[0].cardinality == 3);  // OOV, missing, a
  CHECK(specs[1].cardinality == 5);  // missing + 4 buckets
  CHECK(specs[2].kind == nn::FieldKind::numeric);
  CHECK(specs[2].width == 2);
  CHECK(specs[4].kind == nn::FieldKind::multi_categorical);
}

// Quantile buckets merge rare values into their neighbours' buckets (UCI Adult's capital gain: 92%
// zeros, ~120 other values in a few dozen buckets). per_value gives a column with
// at most `buckets` distinct training values one bucket per value, as histogram gradient boosting
// bins such a column.
TEST_CASE("data/feature_set: per_value buckets give each distinct value its own id, midway boundaries") {
  TempDir dir;
  // x: 1 six times, then 2, 5, 5, 9 (sorted: 1 1 1 1 1 1 2 5 5 9).
  const CsvChunk train = read_csv(write_text(dir, "v.csv", "x\n1\n5\n1\n2\n1\n9\n1\n5\n1\n1\n"));
  const CsvChunk fresh = read_csv(write_text(dir, "f.csv", "x\n1\n2\n3\n4\n5\n9\n100\n0\n?\n"));
  FeatureSet fs;
  fs.numeric("x", {.buckets = 4, .field = "quantile"})
      .numeric("x", {.buckets = 4, .per_value = true, .field = "each"})
      .numeric("x", {.buckets = 3, .per_value = true, .field = "too_many"});
  fs.fit(train);
  const TabularDataset ds = fs.transform(fresh);
  // Quantile, 4 buckets: sorted values at indices 10k/4 = 2, 5, 7 are 1, 1, 5; boundaries {1, 5}:
  // 1 and 2 (and 3, 4) share id 2; 5, 9 and 100 id 3; 0 id 1; missing 0.
  CHECK(field(ds, "quantile").ids.to_vector<std::int64_t>() == std::vector<std::int64_t>{2, 2, 2, 2, 3, 3, 3, 1, 0});
  CHECK(field(ds, "quantile").spec.cardinality == 4);
  // Per value: 4 distinct values {1, 2, 5, 9} <= 4 buckets; boundaries 1.5, 3.5, 7: 1 -> 1, 2 -> 2,
  // 3 -> 2 (nearer 2), 4 -> 3 (nearer 5), 5 -> 3, 9 -> 4, 100 -> 4, 0 -> 1 (below every value); missing 0.
  CHECK(field(ds, "each").ids.to_vector<std::int64_t>() == std::vector<std::int64_t>{1, 2, 2, 3, 3, 4, 4, 1, 0});
  CHECK(field(ds, "each").spec.cardinality == 5);
  // 4 distinct values > 3 buckets: quantiles, at indices 10k/3 = 3, 6: values 1, 2 -> boundaries {1, 2}.
  CHECK(field(ds, "too_many").ids.to_vector<std::int64_t>() == std::vector<std::int64_t>{2, 3, 3, 3, 3, 3, 3, 1, 0});
  // The option is part of the state: a set rebuilt from it and fitted again buckets the same.
  FeatureSet again = FeatureSet::from_state(fs.state_dict());
  again.fit(train);
  CHECK(field(again.transform(fresh), "each").ids.to_vector<std::int64_t>() ==
        field(ds, "each").ids.to_vector<std::int64_t>());
  CHECK(again.state_dict() == fs.state_dict());
  // A state saved before the option existed has no "per_value": it loads with quantile buckets,
  // keeping its saved boundaries (column 1 is "each").
  nn::StateDict old = fs.state_dict();
  REQUIRE(old.erase("1.per_value"));
  FeatureSet from_old = FeatureSet::from_state(old);
  CHECK(field(from_old.transform(fresh), "each").ids.to_vector<std::int64_t>() ==
        field(ds, "each").ids.to_vector<std::int64_t>());
  from_old.fit(train);
  CHECK(field(from_old.transform(fresh), "each").ids.to_vector<std::int64_t>() ==
        field(ds, "quantile").ids.to_vector<std::int64_t>());
}

TEST_CASE("data/feature_set: a set rebuilt from its state (through a checkpoint) transforms new rows identically") {
  TempDir dir;
  std::string text = kTrain;
  text.replace(text.find(",e,"), 3, ",1,");
  FeatureSet fs = census_like();
  fs.fit(read_csv(write_text(dir, "train.csv", text)));
  nn::Linear model(2, 1);
  nn::Checkpoint ckpt;
  ckpt.model = nn::module_state(model);
  ckpt.extra["features"] = fs.state_dict();
  nn::write_checkpoint(dir.file("m.ckpt"), ckpt);
  const FeatureSet loaded = FeatureSet::from_state(nn::read_checkpoint(dir.file("m.ckpt")).extra.at("features"));
  // New rows: an unseen job (OOV), an unseen tag, a value past the last boundary.
  const CsvChunk fresh = read_csv(write_text(dir, "new.csv", "job,city,gain,age,tags,income\nzzz,x,7,99,r|new,>50K\n"));
  const TabularDataset a = fs.transform(fresh), b = loaded.transform(fresh);
  REQUIRE(a.fields.size() == b.fields.size());
  for (std::size_t f = 0; f < a.fields.size(); ++f) {
    CAPTURE(a.fields[f].spec.name);
    if (a.fields[f].ids.defined()) CHECK(a.fields[f].ids.to_vector<std::int64_t>() == b.fields[f].ids.to_vector<std::int64_t>());
    if (a.fields[f].values.defined()) CHECK(a.fields[f].values.to_vector<float>() == b.fields[f].values.to_vector<float>());
  }
  CHECK(field(b, "job").ids.to_vector<std::int64_t>() == std::vector<std::int64_t>{0});
  CHECK(field(b, "tags").ids.to_vector<std::int64_t>() == std::vector<std::int64_t>{4, 0});
  CHECK(fs.state_dict() == loaded.state_dict());
}

// Found by fuzz_csv: the vocabulary was saved joined by NUL, so a category holding a NUL byte came
// back as two and shifted every id after it.
TEST_CASE("data/feature_set: categories holding a NUL byte survive the state round trip") {
  TempDir dir;
  using namespace std::string_literals;
  const std::string path = write_text(dir, "nul.csv", "k,tags\na\0b,x\0y|z\na\0b,z\nc,x\0y\n"s);
  FeatureSet fs;
  fs.categorical("k").multi_categorical("tags");
  const CsvChunk chunk = read_csv(path);
  fs.fit(chunk);
  CHECK(fs.vocabulary("k") == std::vector<std::string>{"a\0b"s, "c"});
  const FeatureSet loaded = FeatureSet::from_state(fs.state_dict());
  CHECK(loaded.vocabulary("k") == fs.vocabulary("k"));
  CHECK(loaded.vocabulary("tags") == fs.vocabulary("tags"));
  const TabularDataset a = fs.transform(chunk), b = loaded.transform(chunk);
  CHECK(field(a, "k").ids.to_vector<std::int64_t>() == std::vector<std::int64_t>{2, 2, 3});
  CHECK(field(b, "k").ids.to_vector<std::int64_t>() == std::vector<std::int64_t>{2, 2, 3});
  CHECK(field(b, "tags").ids.to_vector<std::int64_t>() == field(a, "tags").ids.to_vector<std::int64_t>());
}

TEST_CASE("data/feature_set: bad input names the file, the line and the column") {
  TempDir dir;
  const std::string path = write_text(dir, "t.csv", kTrain);  // 'e' in the numeric column gain
  FeatureSet fs = census_like();
  CHECK(error_message([&] { fs.fit(read_csv(path)); }) == "csv: " + path + ":3: column 'gain': 'e' is not a number");
  std::string text = kTrain;
  text.replace(text.find(",e,"), 3, ",1,");
  text.replace(text.find("<=50K\na"), 5, "maybe");
  const std::string bad_label = write_text(dir, "l.csv", text);
  fs.fit(read_csv(bad_label));  // labels are not fitted
  CHECK(error_message([&] { fs.transform(read_csv(bad_label)); }) ==
        "FeatureSet: " + bad_label + ":3: column 'income': label 'maybe' of task 'rich' is not one of '>50K', '<=50K'");
  const std::string header_only = write_text(dir, "h.csv", "job,city,gain,age,tags,income\n");
  CHECK(error_message([&] { fs.fit(read_csv(header_only)); }) ==
        "FeatureSet: fit: " + header_only + ": the training split has no rows");
  const std::string no_column = write_text(dir, "n.csv", "job\na\n");
  CHECK(error_message([&] { fs.fit(read_csv(no_column)); }) == "csv: " + no_column + ": no column 'city' (columns: job)");
  FeatureSet unfitted = census_like();
  CHECK(error_message([&] { unfitted.transform(read_csv(header_only)); }) ==
        "FeatureSet: transform before fit (or load_state_dict)");
  CHECK(error_message([&] { FeatureSet().numeric("a", {.buckets = 1}); }) ==
        "FeatureSet: 'a': buckets must be 0 (none) or > 1, got 1");
  CHECK(error_message([&] { FeatureSet().numeric("a", {.per_value = true}); }) ==
        "FeatureSet: 'a': per_value needs buckets > 1");
  CHECK(error_message([&] { FeatureSet().numeric("a").categorical("a"); }) == "FeatureSet: 'a' is declared twice");
  FeatureSet two;
  two.numeric("a").numeric("a", {.buckets = 2, .field = "a_buckets"});  // one column, two fields
  CHECK(two.task_names().empty());
  const std::string negative = write_text(dir, "g.csv", "job,city,gain,age,tags,income\na,x,-3,1,p,>50K\n");
  CHECK(error_message([&] { fs.fit(read_csv(negative)); }) ==
        "FeatureSet: " + negative + ":2: column 'gain': log1p needs a value > -1, got -3");
}

TEST_CASE("data/tabular_loader: fields, labels and masks shuffled together; bags re-based per batch") {
  TempDir dir;
  std::string text = "id,tags,y\n";
  for (int i = 0; i < 10; ++i) text += std::to_string(i) + "," + std::string(static_cast<std::size_t>(i % 3), 't') + (i % 3 ? "|u" : "") + "," + (i == 4 ? "?" : std::to_string(i)) + "\n";
  const CsvChunk chunk = read_csv(write_text(dir, "d.csv", text));
  FeatureSet fs;
  fs.numeric("id", {.standardize = false}).multi_categorical("tags").label("y", "y");
  fs.fit(chunk);
  const TabularDataset ds = fs.transform(chunk);
  TabularLoader loader(ds, {.batch = 4, .shuffle = true, .seed = 3});
  CHECK(loader.num_batches() == 3);
  std::vector<int> seen;
  for (auto& batch : loader) {
    const auto ids = batch.features.at("id").values.to_vector<float>();
    const auto y = batch.y[0].to_vector<float>();
    const auto m = batch.mask[0].to_vector<float>();
    const auto starts = batch.features.at("tags").offsets.to_vector<std::int64_t>();
    const auto bag = batch.features.at("tags").ids.to_vector<std::int64_t>();
    REQUIRE(starts.size() == ids.size());
    CHECK(starts[0] == 0);
    for (std::size_t r = 0; r < ids.size(); ++r) {
      const int id = static_cast<int>(ids[r]);
      seen.push_back(id);
      CHECK(m[r] == (id == 4 ? 0.0f : 1.0f));
      CHECK(y[r] == (id == 4 ? 0.0f : static_cast<float>(id)));
      const std::int64_t end = r + 1 < starts.size() ? starts[r + 1] : static_cast<std::int64_t>(bag.size());
      CHECK(end - starts[r] == (id % 3 == 0 ? 0 : 2));  // "t|u" or "tt|u": two pieces, none for ""
    }
  }
  std::vector<int> sorted = seen;
  std::sort(sorted.begin(), sorted.end());
  CHECK(sorted == std::vector<int>{0, 1, 2, 3, 4, 5, 6, 7, 8, 9});
  CHECK(seen != sorted);  // shuffled
}

TEST_CASE("data/take_rows: the chosen rows of every field, label and mask, bags re-based") {
  TempDir dir;
  const CsvChunk chunk = read_csv(write_text(dir, "t.csv", "x,tags,y\n1,a|b,0\n2,,?\n3,b,1\n"));
  FeatureSet fs;
  fs.numeric("x", {.standardize = false}).multi_categorical("tags").label("y", "y");
  fs.fit(chunk);
  const TabularDataset ds = fs.transform(chunk);
  const TabularDataset sub = take_rows(ds, {2, 0, 0});
  CHECK(sub.rows == 3);
  CHECK(sub.task_names == std::vector<std::string>{"y"});
  CHECK(sub.fields[0].values.to_vector<float>() == std::vector<float>{3, 1, 1});
  // Vocabulary by falling count: "b" (2) is id 2, "a" is 3. Row 2 is [b], row 0 is [a, b].
  CHECK(sub.fields[1].ids.to_vector<std::int64_t>() == std::vector<std::int64_t>{2, 3, 2, 3, 2});
  CHECK(sub.fields[1].offsets.to_vector<std::int64_t>() == std::vector<std::int64_t>{0, 1, 3, 5});
  CHECK(sub.labels[0].to_vector<float>() == std::vector<float>{1, 0, 0});
  CHECK(sub.masks[0].to_vector<float>() == std::vector<float>{1, 1, 1});
  CHECK(take_rows(ds, {1}).masks[0].to_vector<float>() == std::vector<float>{0});
  CHECK(take_rows(ds, {}).rows == 0);
  CHECK(error_message([&] { take_rows(ds, {0, 3}); }) == "take_rows: row 3 is out of range for 3 rows");
}

TEST_CASE("data/take_rows: categorical ids (one per row) and numeric values three wide, past the prefetch distance") {
  // 40 rows, so the one-wide gather's look-ahead (16 rows) runs out inside the batch too.
  constexpr std::int64_t n = 40;
  TabularDataset ds;
  ds.rows = n;
  std::vector<std::int64_t> ids(n);
  std::vector<float> values(3 * n), labels(n);
  for (std::int64_t r = 0; r < n; ++r) {
    ids[static_cast<std::size_t>(r)] = 1000 + r;
    labels[static_cast<std::size_t>(r)] = static_cast<float>(r) / 2;
    for (int c = 0; c < 3; ++c) values[static_cast<std::size_t>(3 * r + c)] = static_cast<float>(10 * r + c);
  }
  TabularDataset::Field cat, num;
  cat.ids = tensor(ids, {n});
  num.values = tensor(values, {n, 3});
  ds.fields = {cat, num};
  ds.task_names = {"t"};
  ds.labels = {tensor(labels, {n, 1})};
  ds.masks = {ones({n, 1})};
  std::vector<std::int64_t> rows;
  for (std::int64_t i = 0; i < 35; ++i) rows.push_back((i * 7 + 3) % n);  // scattered, with repeats
  const TabularDataset sub = take_rows(ds, rows);
  const auto got_ids = sub.fields[0].ids.to_vector<std::int64_t>();
  const auto got_values = sub.fields[1].values.to_vector<float>();
  const auto got_labels = sub.labels[0].to_vector<float>();
  REQUIRE(got_ids.size() == rows.size());
  REQUIRE(got_values.size() == 3 * rows.size());
  CHECK(sub.fields[1].values.shape() == Shape{35, 3});
  for (std::size_t i = 0; i < rows.size(); ++i) {
    CHECK(got_ids[i] == 1000 + rows[i]);
    CHECK(got_labels[i] == static_cast<float>(rows[i]) / 2);
    for (int c = 0; c < 3; ++c) CHECK(got_values[3 * i + static_cast<std::size_t>(c)] == static_cast<float>(10 * rows[i] + c));
  }
}
