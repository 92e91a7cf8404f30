// UCI Adult for the census examples (census_mtl, benchmark_methods): the files' columns, the
// features and the two task labels of the MMoE paper's census setup, defined once so both programs
// train on the same input. examples/census_mtl.cpp says why each feature is there.
#pragma once

#include <string>
#include <vector>

#include "ladon.h"

namespace examples {

// adult.data and adult.test have no header; adult.test opens with "|1x3 Cross validator".
struct AdultRows {
  ladon::data::CsvChunk train, test;
};

inline AdultRows read_adult(const std::string& dir) {
  const ladon::data::CsvOptions train_csv{
      .header = false,
      .columns = {"age", "workclass", "fnlwgt", "education", "education-num", "marital-status", "occupation",
                  "relationship", "race", "sex", "capital-gain", "capital-loss", "hours-per-week", "native-country",
                  "income"}};
  ladon::data::CsvOptions test_csv = train_csv;
  test_csv.skip_lines = 1;
  return {ladon::data::read_csv(dir + "/adult.data", train_csv), ladon::data::read_csv(dir + "/adult.test", test_csv)};
}

// Every column but income, marital-status and relationship (relationship encodes marital status).
// Age, hours, capital gain and loss are also bucketed, one bucket per distinct value where there
// are at most `buckets` of them; fnlwgt (a sampling weight) is a number only.
inline ladon::data::FeatureSet census_features(long buckets) {
  ladon::data::FeatureSet fs;
  for (const char* c : {"workclass", "education", "occupation", "race", "sex", "native-country"}) fs.categorical(c);
  fs.numeric("age").numeric("fnlwgt", {.log1p = true}).numeric("education-num").numeric("hours-per-week");
  fs.numeric("capital-gain", {.log1p = true}).numeric("capital-loss", {.log1p = true});
  for (const char* c : {"age", "hours-per-week", "capital-gain", "capital-loss"})
    fs.numeric(c, {.buckets = buckets, .per_value = true, .field = std::string(c) + "_bucket"});
  // adult.test writes its labels with a final '.'.
  fs.label("income", "income", {.map = {{">50K", 1}, {">50K.", 1}, {"<=50K", 0}, {"<=50K.", 0}}});
  fs.label("never_married", "marital-status",
           {.map = {{"Never-married", 1}, {"Married-civ-spouse", 0}, {"Divorced", 0}, {"Separated", 0},
                    {"Widowed", 0}, {"Married-spouse-absent", 0}, {"Married-AF-spouse", 0}}});
  return fs;
}

}  // namespace examples
