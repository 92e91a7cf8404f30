#include "csv_reader.h"

#include <csv.h>

#include <algorithm>
#include <charconv>
#include <cstring>
#include <set>

#include "../core/error.h"

namespace ladon::data {

namespace {
int is_space_only(unsigned char c) { return c == CSV_SPACE; }
int is_nothing(unsigned char) { return 0; }
}  // namespace

// What the libcsv callbacks write into. They cannot throw through C code, so the first error is
// kept here and thrown once csv_parse returns.
struct CsvReader::State {
  // Freed here, not in ~CsvReader: a constructor that throws (a bad header, say) never runs that.
  ~State() {
    if (parser_live) csv_free(&parser);
  }
  csv_parser parser{};
  bool parser_live = false;
  const std::vector<std::string>* markers = nullptr;
  std::size_t longest_marker = 0;

  bool in_header = false;
  std::vector<std::string> header;
  std::size_t cols = 0;
  CsvChunk buffer;  // rows parsed and not yet handed out

  std::size_t col = 0;  // field index within the current row
  std::int64_t line = 1;
  std::int64_t row_line = 1;
  std::string error;

  bool is_missing(std::string_view text) const {
    if (text.size() > longest_marker) return false;
    for (const std::string& m : *markers)
      if (text == m) return true;
    return false;
  }

  static void on_field(void* s, std::size_t len, void* data) {
    State& st = *static_cast<State*>(data);
    if (!st.error.empty()) return;
    const char* text = s == nullptr ? "" : static_cast<const char*>(s);
    if (st.col == 0) st.row_line = st.line;
    // Newlines inside a quoted field still advance the line count.
    for (const char* p = text; (p = static_cast<const char*>(std::memchr(p, '\n', len - (p - text)))) != nullptr; ++p)
      ++st.line;
    if (st.in_header) {
      st.header.emplace_back(text, len);
      ++st.col;
      return;
    }
    if (st.col >= st.cols) {
      st.error = "line " + std::to_string(st.row_line) + ": more than the " + std::to_string(st.cols) + " fields expected";
      return;
    }
    CsvChunk::Column& c = st.buffer.columns_[st.col++];
    c.chars.append(text, len);
    if (c.chars.size() > UINT32_MAX) {
      st.error = "line " + std::to_string(st.row_line) + ": a chunk's column passed 4 GiB; use smaller chunk_rows";
      return;
    }
    c.ends.push_back(static_cast<std::uint32_t>(c.chars.size()));
    c.missing.push_back(st.is_missing({text, len}) ? 1 : 0);
  }

  static void on_row(int terminator, void* data) {
    State& st = *static_cast<State*>(data);
    if (!st.error.empty()) return;
    if (st.col == 0) {  // an empty line (or the LF of a CRLF)
      if (terminator == '\n') ++st.line;
      return;
    }
    if (st.in_header) {
      st.in_header = false;
    } else if (st.col != st.cols) {
      st.error = "line " + std::to_string(st.row_line) + ": " + std::to_string(st.col) + " fields, expected " +
                 std::to_string(st.cols);
      return;
    } else {
      st.buffer.lines_.push_back(st.row_line);
    }
    st.col = 0;
    if (terminator == '\n') ++st.line;
  }
};

void CsvChunk::reset(std::size_t cols) {
  columns_.resize(cols);
  for (Column& c : columns_) {
    c.chars.clear();
    c.ends.clear();
    c.missing.clear();
  }
  lines_.clear();
}

std::int64_t CsvChunk::column(std::string_view name) const {
  for (std::size_t i = 0; i < names_->size(); ++i)
    if ((*names_)[i] == name) return static_cast<std::int64_t>(i);
  std::string all;
  for (const std::string& n : *names_) all += (all.empty() ? "" : ", ") + n;
  detail::fail("csv", *file_, ": no column '", name, "' (columns: ", all, ")");
}

std::string CsvChunk::where(std::int64_t col, std::int64_t row) const {
  return *file_ + ":" + std::to_string(line(row)) + ": column '" + (*names_)[static_cast<std::size_t>(col)] + "'";
}

double CsvChunk::number(std::int64_t col, std::int64_t row) const {
  const std::string_view t = text(col, row);
  LADON_CHECK(!missing(col, row), "csv", where(col, row), ": value is missing ('", t, "')");
  double value = 0;
  const char* begin = t.data();
  if (!t.empty() && *begin == '+') ++begin;  // from_chars rejects a leading '+'
  const auto [end, ec] = std::from_chars(begin, t.data() + t.size(), value);
  LADON_CHECK(ec == std::errc() && end == t.data() + t.size(), "csv", where(col, row), ": '", t,
              "' is not a number");
  return value;
}

CsvReader::CsvReader(std::string path, CsvOptions options)
    : path_(std::make_shared<const std::string>(std::move(path))),
      options_(std::move(options)),
      state_(std::make_unique<State>()) {
  const char* op = "csv";
  LADON_CHECK(options_.chunk_rows > 0, op, *path_, ": chunk_rows must be positive, got ", options_.chunk_rows);
  LADON_CHECK(options_.block_bytes > 0, op, *path_, ": block_bytes must be positive, got ", options_.block_bytes);
  LADON_CHECK(options_.skip_lines >= 0, op, *path_, ": skip_lines must be >= 0, got ", options_.skip_lines);
  LADON_CHECK(options_.delimiter != options_.quote, op, *path_, ": delimiter and quote are both '", options_.delimiter,
              "'");
  LADON_CHECK(options_.header || !options_.columns.empty(), op, *path_,
              ": without a header the column names must be given (options.columns)");
  file_.reset(std::fopen(path_->c_str(), "rb"));
  LADON_CHECK(file_ != nullptr, op, *path_, ": cannot open: ", std::strerror(errno));

  State& st = *state_;
  LADON_CHECK(csv_init(&st.parser, CSV_STRICT | CSV_STRICT_FINI | CSV_REPALL_NL) == 0, op, *path_,
              ": libcsv could not initialise");
  st.parser_live = true;
  csv_set_delim(&st.parser, static_cast<unsigned char>(options_.delimiter));
  csv_set_quote(&st.parser, static_cast<unsigned char>(options_.quote));
  if (!options_.trim)
    csv_set_space_func(&st.parser, is_nothing);
  else if (options_.delimiter == '\t')
    csv_set_space_func(&st.parser, is_space_only);
  st.markers = &options_.missing;
  for (const std::string& m : options_.missing) st.longest_marker = std::max(st.longest_marker, m.size());
  st.buffer.file_ = path_;

  // Skip raw lines, then read the header row (if any) through the parser.
  std::vector<char> block(static_cast<std::size_t>(options_.block_bytes));
  std::int64_t to_skip = options_.skip_lines;
  st.in_header = options_.header;
  std::size_t got = 0;
  while (to_skip > 0 && (got = std::fread(block.data(), 1, block.size(), file_.get())) > 0) {
    std::size_t pos = 0;
    while (to_skip > 0 && pos < got) {
      const char* nl = static_cast<const char*>(std::memchr(block.data() + pos, '\n', got - pos));
      if (nl == nullptr) {
        pos = got;
        break;
      }
      pos = static_cast<std::size_t>(nl - block.data()) + 1;
      --to_skip;
      ++st.line;
    }
    if (to_skip == 0) {
      got -= pos;
      std::memmove(block.data(), block.data() + pos, got);
    }
  }
  // The first bytes after the skipped lines (already read) and then more until the header is done.
  // Data rows parsed meanwhile need the column count, which only the header gives: with a header,
  // feed in small steps until it ends.
  auto set_names = [&](std::vector<std::string> names) {
    std::set<std::string> seen;
    for (const std::string& n : names)
      LADON_CHECK(seen.insert(n).second, op, *path_, ": column '", n, "' appears twice");
    st.cols = names.size();
    st.buffer.reset(st.cols);
    names_ = std::make_shared<const std::vector<std::string>>(std::move(names));
    st.buffer.names_ = names_;
  };
  if (!options_.header) set_names(options_.columns);
  std::size_t pos = 0;
  while (options_.header && st.in_header) {
    if (pos == got) {
      got = std::fread(block.data(), 1, block.size(), file_.get());
      pos = 0;
      if (got == 0) {
        finish();  // a header line without a final newline ends here
        break;
      }
    }
    // One byte at a time until the header row ends, so no data row is parsed before cols is set.
    feed(block.data() + pos, 1);
    ++pos;
  }
  if (options_.header) {
    LADON_CHECK(!st.header.empty(), op, *path_, ": the file has no header line");
    if (!options_.columns.empty())
      LADON_CHECK(options_.columns == st.header, op, *path_, ": the header has ", st.header.size(),
                  " columns that differ from the ", options_.columns.size(), " given in options.columns");
    set_names(st.header);
  }
  if (pos < got) feed(block.data() + pos, got - pos);
}

CsvReader::~CsvReader() = default;

void CsvReader::feed(const char* bytes, std::size_t size) {
  State& st = *state_;
  const std::size_t used = csv_parse(&st.parser, bytes, size, State::on_field, State::on_row, &st);
  LADON_CHECK(st.error.empty(), "csv", *path_, ":", st.error);
  LADON_CHECK(used == size, "csv", *path_, ": line ", st.line, ": ", csv_strerror(csv_error(&st.parser)),
              " (a quote inside an unquoted field, or text after a closing quote)");
}

void CsvReader::finish() {
  State& st = *state_;
  if (done_) return;
  done_ = true;
  const int rc = csv_fini(&st.parser, State::on_field, State::on_row, &st);
  LADON_CHECK(st.error.empty(), "csv", *path_, ":", st.error);
  LADON_CHECK(rc == 0, "csv", *path_, ": line ", st.row_line, ": a quoted field is not closed before the end of the file");
}

bool CsvReader::next(CsvChunk& chunk) {
  State& st = *state_;
  std::vector<char> block(static_cast<std::size_t>(options_.block_bytes));
  while (st.buffer.rows() < options_.chunk_rows && !done_) {
    const std::size_t got = std::fread(block.data(), 1, block.size(), file_.get());
    if (got == 0) {
      LADON_CHECK(!std::ferror(file_.get()), "csv", *path_, ": read error");
      finish();
    } else {
      feed(block.data(), got);
    }
  }
  std::swap(chunk, st.buffer);
  st.buffer.reset(st.cols);
  st.buffer.names_ = names_;
  st.buffer.file_ = path_;
  // The fields of a row cut by the block's end stay with the parser: move them to the new buffer.
  for (std::size_t c = 0; c < st.col; ++c) {
    CsvChunk::Column& from = chunk.columns_[c];
    CsvChunk::Column& to = st.buffer.columns_[c];
    const std::size_t begin = from.ends.size() > 1 ? from.ends[from.ends.size() - 2] : 0;
    to.chars.append(from.chars, begin);
    to.ends.push_back(static_cast<std::uint32_t>(to.chars.size()));
    to.missing.push_back(from.missing.back());
    from.chars.resize(begin);
    from.ends.pop_back();
    from.missing.pop_back();
  }
  return chunk.rows() > 0;
}

CsvChunk read_csv(const std::string& path, CsvOptions options) {
  options.chunk_rows = INT64_MAX;
  CsvReader reader(path, std::move(options));
  CsvChunk chunk;
  reader.next(chunk);  // at the end of the file, an empty chunk that still knows its columns
  return chunk;
}

}  // namespace ladon::data
