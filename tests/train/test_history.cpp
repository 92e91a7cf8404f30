#include <cmath>

#include "helpers.h"

using namespace ladon;
using ladon::testing::error_message;
using ladon::testing::read_text;
using ladon::testing::TempDir;

namespace {

train::History two_records(const std::string& dir = "") {
  train::History h({"item", "group"}, dir);
  h.add({.step = 10, .epoch = 1, .split = "train", .task = "item", .metric = "loss", .value = 0.5,
         .weights = {1, 0.25}, .lr = 0.001, .wall_time = 1.5});
  h.add({.step = 20, .epoch = 2, .split = "val", .task = "group", .metric = "accuracy", .value = 0.875});
  return h;
}

}  // namespace

TEST_CASE("History: CSV and JSON Lines hold every field; unknown numbers are blank or null") {
  const train::History h = two_records();
  CHECK(h.csv() ==
        "step,epoch,split,task,metric,value,lr,wall_time,weight_item,weight_group\n"
        "10,1,train,item,loss,0.5,0.001,1.5,1,0.25\n"
        "20,2,val,group,accuracy,0.875,,0,,\n");
  CHECK(h.json_lines() ==
        "{\"step\":10,\"epoch\":1,\"split\":\"train\",\"task\":\"item\",\"metric\":\"loss\",\"value\":0.5,"
        "\"weights\":{\"item\":1,\"group\":0.25},\"lr\":0.001,\"wall_time\":1.5}\n"
        "{\"step\":20,\"epoch\":2,\"split\":\"val\",\"task\":\"group\",\"metric\":\"accuracy\",\"value\":0.875,"
        "\"weights\":null,\"lr\":null,\"wall_time\":0}\n");
  CHECK(h.series("val", "group", "accuracy").size() == 1);
  CHECK(h.series("val", "item", "accuracy").empty());
}

TEST_CASE("History: fields with commas and quotes are quoted in CSV and escaped in JSON") {
  train::History h({"a,b"});
  h.add({.step = 1, .epoch = 1, .split = "say \"hi\"", .task = "a,b", .metric = "m", .value = NAN});
  CHECK(h.csv() == "step,epoch,split,task,metric,value,lr,wall_time,\"weight_a,b\"\n"
                   "1,1,\"say \"\"hi\"\"\",\"a,b\",m,nan,,0,\n");
  CHECK(h.json_lines() == "{\"step\":1,\"epoch\":1,\"split\":\"say \\\"hi\\\"\",\"task\":\"a,b\",\"metric\":\"m\","
                          "\"value\":null,\"weights\":null,\"lr\":null,\"wall_time\":0}\n");
}

TEST_CASE("History: write() puts both files in the folder; a folder that cannot be made is an error") {
  TempDir dir;
  const train::History h = two_records(dir.file("run"));
  h.write();
  CHECK(read_text(dir.file("run/metrics.csv")) == h.csv());
  CHECK(read_text(dir.file("run/metrics.jsonl")) == h.json_lines());
  { std::ofstream(dir.file("plain")) << "x"; }
  CHECK(error_message([&] { train::History({"a"}, dir.file("plain/run")); }) ==
        "History: cannot create output folder '" + dir.file("plain/run") + "': Not a directory");
  CHECK(read_text(dir.file("plain")) == "x");
  CHECK(error_message([] { train::History({}).write(); }) == "History::write: this history has no output folder");
}

TEST_CASE("History: state round-trips exactly, and a history of other tasks is refused") {
  train::History h = two_records();
  h.add({.step = 30, .epoch = 3, .split = "train", .task = "", .metric = "joint", .value = 1.0 / 3.0, .lr = NAN,
         .wall_time = 2.0 / 7.0});
  train::History back({"item", "group"});
  back.load_state_dict(h.state_dict());
  REQUIRE(back.records().size() == 3);
  CHECK(back.csv() == h.csv());
  CHECK(back.records()[2].value == 1.0 / 3.0);  // every bit
  CHECK(back.records()[2].wall_time == 2.0 / 7.0);
  CHECK(back.records()[0].weights == std::vector<double>{1, 0.25});
  CHECK(std::isnan(back.records()[1].lr));
  train::History other({"item"});
  CHECK(error_message([&] { other.load_state_dict(h.state_dict()); }) ==
        "History::load_state_dict: the saved history is of tasks 'item\ngroup\n', not of this run's");
  CHECK(other.records().empty());
}

TEST_CASE("History: bad records are errors") {
  train::History h({"item"});
  CHECK(error_message([&] { h.add({.split = "train", .task = "nope", .metric = "loss"}); }) ==
        "History::add: no task 'nope' in this history");
  CHECK(error_message([&] { h.add({.split = "train", .task = "item", .metric = "loss", .weights = {1, 2}}); }) ==
        "History::add: 2 task weights for 1 tasks");
  CHECK(error_message([&] { h.add({.split = "", .metric = "loss"}); }) ==
        "History::add: a record needs a split and a metric (got '', 'loss')");
  CHECK(error_message([] { train::History({"a", "a"}); }) == "History: task 'a' appears twice");
  CHECK(h.records().empty());
}
