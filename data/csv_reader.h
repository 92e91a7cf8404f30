// CSV files into columns of text, streamed in chunks, parsed by Debian's libcsv (RFC 4180: quoted
// fields, "" for a quote inside one, delimiters and newlines inside quotes, CRLF or LF).
//
//   data::CsvReader reader("adult.data", {.header = false, .columns = {"age", "workclass", ...}});
//   data::CsvChunk chunk;
//   while (reader.next(chunk)) {                  // about chunk_rows rows at a time
//     for (std::int64_t r = 0; r < chunk.rows(); ++r)
//       if (!chunk.missing(0, r)) use(chunk.number(0, r));   // errors name file, line and column
//   }
//
// A chunk keeps each column's fields as one block of characters plus end offsets, so memory
// stays bounded by the chunk, whatever the file's size. Fields are trimmed of spaces and tabs
// around them outside quotes (libcsv's rule; `trim = false` keeps them). A field is missing when
// its text (after trimming) equals one of `missing`: by default "" and "?" (the UCI convention).
// Empty lines are skipped. Every error is a ladon::Error naming the file, and where it applies
// the line (1-based, counting skipped lines) and the column.
#pragma once

#include "layer_fence.h"

#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace ladon::data {

struct CsvOptions {
  char delimiter = ',';
  char quote = '"';
  bool header = true;                // the first line (after skip_lines) names the columns
  std::vector<std::string> columns = {};  // the names when there is no header; with one, must match it
  std::int64_t skip_lines = 0;       // raw lines dropped before anything is parsed
  bool trim = true;                  // drop spaces (and tabs unless tab is the delimiter) around fields
  std::vector<std::string> missing = {"", "?"};
  std::int64_t chunk_rows = 1 << 16;  // rows per chunk (a chunk may run over by one read block's rows)
  std::int64_t block_bytes = 1 << 20;  // bytes read from the file at a time
};

// The rows of one chunk, column by column.
class CsvChunk {
 public:
  std::int64_t rows() const { return static_cast<std::int64_t>(lines_.size()); }
  std::int64_t cols() const { return static_cast<std::int64_t>(columns_.size()); }
  const std::vector<std::string>& names() const { return *names_; }
  const std::string& file() const { return *file_; }
  // Index of the column called `name`; throws naming the file and listing the columns.
  std::int64_t column(std::string_view name) const;
  std::int64_t line(std::int64_t row) const { return lines_[static_cast<std::size_t>(row)]; }  // where a row starts

  std::string_view text(std::int64_t col, std::int64_t row) const {
    const Column& c = columns_[static_cast<std::size_t>(col)];
    const std::uint32_t begin = row == 0 ? 0 : c.ends[static_cast<std::size_t>(row) - 1];
    return {c.chars.data() + begin, c.ends[static_cast<std::size_t>(row)] - begin};
  }
  bool missing(std::int64_t col, std::int64_t row) const {
    return columns_[static_cast<std::size_t>(col)].missing[static_cast<std::size_t>(row)] != 0;
  }
  // The field as a number (std::from_chars: decimal or scientific, "inf", "nan"). Throws naming the
  // file, line and column when it is missing or not entirely a number.
  double number(std::int64_t col, std::int64_t row) const;
  // A ladon::Error message prefix "file:line: column 'name'" for errors found later (feature columns).
  std::string where(std::int64_t col, std::int64_t row) const;

 private:
  friend class CsvReader;
  struct Column {
    std::string chars;                // every field's text, concatenated
    std::vector<std::uint32_t> ends;  // end offset of each row's field in chars
    std::vector<std::uint8_t> missing;
  };
  void reset(std::size_t cols);
  std::vector<Column> columns_;
  std::vector<std::int64_t> lines_;
  std::shared_ptr<const std::vector<std::string>> names_;
  std::shared_ptr<const std::string> file_;
};

class CsvReader {
 public:
  // Opens the file and reads the header (or takes options.columns). Throws when the file cannot
  // be opened, there is neither a header nor a column list, a name repeats, or a given list
  // disagrees with the header.
  explicit CsvReader(std::string path, CsvOptions options = {});
  ~CsvReader();
  CsvReader(const CsvReader&) = delete;
  CsvReader& operator=(const CsvReader&) = delete;

  const std::vector<std::string>& columns() const { return *names_; }
  const std::string& path() const { return *path_; }
  // Fills `chunk` with the next rows; false (and an empty chunk) once the file is exhausted.
  // Throws on a row with the wrong number of fields or malformed quoting, naming file and line.
  bool next(CsvChunk& chunk);

  struct State;  // the parser and its callbacks' state (csv.cpp)

 private:
  void feed(const char* bytes, std::size_t size);
  void finish();

  std::shared_ptr<const std::string> path_;
  CsvOptions options_;
  std::shared_ptr<const std::vector<std::string>> names_;
  std::unique_ptr<State> state_;
  std::unique_ptr<std::FILE, int (*)(std::FILE*)> file_{nullptr, &std::fclose};
  bool done_ = false;
};

// The whole file as one chunk (for files that fit in memory).
CsvChunk read_csv(const std::string& path, CsvOptions options = {});

}  // namespace ladon::data
