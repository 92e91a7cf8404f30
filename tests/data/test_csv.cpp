#include <doctest/doctest.h>

#include <fstream>

#include "data/csv_reader.h"
#include "helpers.h"
#include "test_util.h"

using namespace ladon;
using namespace ladon::data;
using namespace ladon::data::test;
using namespace ladon::testing;

namespace {
std::vector<std::string> column_text(const CsvChunk& c, std::int64_t col) {
  std::vector<std::string> out;
  for (std::int64_t r = 0; r < c.rows(); ++r) out.emplace_back(c.text(col, r));
  return out;
}
}  // namespace

TEST_CASE("data/csv: RFC 4180 quoting, header, CRLF, spaces after the delimiter, missing markers") {
  TempDir dir;
  const std::string path = write_text(dir, "a.csv",
                                      "name,note,x\r\n"
                                      "alice, \"says \"\"hi\"\", then, leaves\" ,1.5\r\n"
                                      "\"bob\",\"two\nlines\",  -2e3\r\n"
                                      "\r\n"
                                      "carol,?,\r\n");
  const CsvChunk c = read_csv(path);
  CHECK(c.names() == std::vector<std::string>{"name", "note", "x"});
  REQUIRE(c.rows() == 3);
  CHECK(column_text(c, 0) == std::vector<std::string>{"alice", "bob", "carol"});
  CHECK(column_text(c, 1) == std::vector<std::string>{"says \"hi\", then, leaves", "two\nlines", "?"});
  CHECK(c.number(2, 0) == 1.5);
  CHECK(c.number(2, 1) == -2000.0);
  CHECK(!c.missing(1, 0));
  CHECK(c.missing(1, 2));  // "?"
  CHECK(c.missing(2, 2));  // empty
  // Lines count from 1, the header included; the quoted newline moves carol to line 6.
  CHECK(c.line(0) == 2);
  CHECK(c.line(1) == 3);
  CHECK(c.line(2) == 6);
  CHECK(c.column("x") == 2);
  CHECK(error_message([&] { c.number(2, 2); }) == "csv: " + path + ":6: column 'x': value is missing ('')");
  CHECK(error_message([&] { c.column("y"); }) == "csv: " + path + ": no column 'y' (columns: name, note, x)");
}

TEST_CASE("data/csv: given columns, skipped lines, other delimiter, own markers, no trimming") {
  TempDir dir;
  const std::string path = write_text(dir, "b.tsv", "|1x3 Cross validator\n1\t NA\n2\tb \n");
  const CsvChunk c = read_csv(path, {.delimiter = '\t', .header = false, .columns = {"n", "s"}, .skip_lines = 1,
                                     .trim = false, .missing = {"NA"}});
  REQUIRE(c.rows() == 2);
  CHECK(c.line(0) == 2);
  CHECK(column_text(c, 1) == std::vector<std::string>{" NA", "b "});
  CHECK(!c.missing(1, 0));  // " NA" is not "NA" without trimming
  const CsvChunk t = read_csv(path, {.delimiter = '\t', .header = false, .columns = {"n", "s"}, .skip_lines = 1,
                                     .missing = {"NA"}});
  CHECK(t.missing(1, 0));
  CHECK(column_text(t, 1)[1] == "b");
}

TEST_CASE("data/csv: streams a file in chunks, every row once, in order") {
  TempDir dir;
  std::string text = "id,v\n";
  for (int i = 0; i < 5000; ++i) text += std::to_string(i) + "," + std::to_string(i * 0.5) + "\n";
  const std::string path = write_text(dir, "big.csv", text);
  CsvReader reader(path, {.chunk_rows = 700, .block_bytes = 4096});
  CsvChunk chunk;
  std::int64_t seen = 0, chunks = 0;
  while (reader.next(chunk)) {
    ++chunks;
    CHECK(chunk.rows() < 700 + 4096 / 4);  // rows are at least 4 bytes
    for (std::int64_t r = 0; r < chunk.rows(); ++r, ++seen) {
      REQUIRE(chunk.number(0, r) == static_cast<double>(seen));
      REQUIRE(chunk.line(r) == seen + 2);
    }
  }
  CHECK(seen == 5000);
  CHECK(chunks == 7);  // rows of ~16 bytes: 3 blocks of 4 KB (~768 rows) reach 700 rows
  CHECK(!reader.next(chunk));
  CHECK(chunk.rows() == 0);
}

TEST_CASE("data/csv: bad input names the file, the line and the column") {
  TempDir dir;
  CHECK(contains(error_message([&] { read_csv(dir.file("none.csv")); }), "none.csv: cannot open"));
  const std::string short_row = write_text(dir, "s.csv", "a,b\n1,2\n3\n");
  CHECK(error_message([&] { read_csv(short_row); }) == "csv: " + short_row + ":line 3: 1 fields, expected 2");
  const std::string long_row = write_text(dir, "l.csv", "a,b\n1,2,3\n");
  CHECK(error_message([&] { read_csv(long_row); }) == "csv: " + long_row + ":line 2: more than the 2 fields expected");
  const std::string text = write_text(dir, "t.csv", "a,b\n1,x1\n");
  const CsvChunk c = read_csv(text);
  CHECK(error_message([&] { c.number(1, 0); }) == "csv: " + text + ":2: column 'b': 'x1' is not a number");
  const std::string bad_quote = write_text(dir, "q.csv", "a,b\n1,\"x\"y\n");
  CHECK(contains(error_message([&] { read_csv(bad_quote); }), bad_quote + ": line 2: "));
  const std::string open_quote = write_text(dir, "o.csv", "a,b\n1,\"xy\n");
  CHECK(error_message([&] { read_csv(open_quote); }) ==
        "csv: " + open_quote + ": line 2: a quoted field is not closed before the end of the file");
  const std::string empty = write_text(dir, "e.csv", "");
  CHECK(error_message([&] { read_csv(empty); }) == "csv: " + empty + ": the file has no header line");
  const std::string dup = write_text(dir, "d.csv", "a,a\n");
  CHECK(error_message([&] { read_csv(dup); }) == "csv: " + dup + ": column 'a' appears twice");
  CHECK(error_message([&] { read_csv(dup, {.header = false}); }) ==
        "csv: " + dup + ": without a header the column names must be given (options.columns)");
  CHECK(contains(error_message([&] { read_csv(dup, {.columns = {"a", "b"}}); }), "differ from the 2 given"));
}
