// Helpers the test files share: a tensor's values as a vector, reach a parameter by its dotted
// name, overwrite a tensor's values, a self-deleting temporary directory, files as text, and the
// message of a ladon::Error.
#pragma once

#include <doctest/doctest.h>
#include <stdlib.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "ladon.h"

namespace ladon::testing {

// A float32 tensor's elements in row-major order, for comparing against hand-worked numbers.
inline std::vector<float> values(const Tensor& t) { return t.to_vector<float>(); }

inline Tensor parameter(nn::Module& module, const std::string& name) {
  for (auto& [n, t] : module.named_parameters())
    if (n == name) return t;
  FAIL("no parameter " << name);
  return {};
}

// Writes v into t in place (t must be contiguous with v.size() elements).
inline void set_values(Tensor t, const std::vector<float>& v) {
  REQUIRE(static_cast<std::int64_t>(v.size()) == t.numel());
  std::copy(v.begin(), v.end(), t.data<float>());
}

// A fresh directory under the system's temporary folder, removed with its contents at the end of
// the test.
class TempDir {
 public:
  TempDir() {
    std::string pattern = (std::filesystem::temp_directory_path() / "ladon-test-XXXXXX").string();
    REQUIRE(::mkdtemp(pattern.data()) != nullptr);
    path_ = pattern;
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  const std::filesystem::path& path() const { return path_; }
  std::string str() const { return path_.string(); }
  std::string file(const std::string& name) const { return (path_ / name).string(); }
  // How many files and folders it holds: writers that go through a temporary must leave none.
  std::size_t entries() const {
    return static_cast<std::size_t>(std::distance(std::filesystem::directory_iterator(path_), {}));
  }

 private:
  std::filesystem::path path_;
};

// Writes `text` to the file `name` in `dir` and returns its path.
inline std::string write_text(const TempDir& dir, const std::string& name, const std::string& text) {
  const std::string path = dir.file(name);
  std::ofstream(path, std::ios::binary) << text;
  return path;
}

inline std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), {}};
}

// The message of the ladon::Error that fn throws, or "(no error)", for checks on a whole message or
// on the part of it that does not depend on the machine (temporary paths, zlib's wording).
template <typename Fn>
std::string error_message(Fn&& fn) {
  try {
    fn();
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

}  // namespace ladon::testing
