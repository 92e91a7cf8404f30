#include "files.h"

#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>

#include "../core/error.h"

namespace ladon::train {

void ensure_writable_dir(const std::string& dir, const char* op) {
  LADON_CHECK(!dir.empty(), op, "the output folder name is empty");
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  LADON_CHECK(!ec, op, "cannot create output folder '", dir, "': ", ec.message());
  LADON_CHECK(std::filesystem::is_directory(dir, ec), op, "output folder '", dir, "' is not a folder");
  const std::string probe = dir + "/.ladon-write-test." + std::to_string(getpid());
  std::FILE* f = std::fopen(probe.c_str(), "wb");
  LADON_CHECK(f != nullptr, op, "cannot write to output folder '", dir, "': ", std::strerror(errno));
  std::fclose(f);
  std::remove(probe.c_str());
}

void write_file_atomic(const std::string& path, const std::string& text, const char* op) {
  const std::string tmp = path + ".tmp." + std::to_string(getpid());
  std::FILE* f = std::fopen(tmp.c_str(), "wb");
  LADON_CHECK(f != nullptr, op, "cannot write '", tmp, "': ", std::strerror(errno));
  const bool written = std::fwrite(text.data(), 1, text.size(), f) == text.size();
  const bool closed = std::fclose(f) == 0;
  if (!written || !closed || std::rename(tmp.c_str(), path.c_str()) != 0) {
    const int err = errno;
    std::remove(tmp.c_str());
    detail::fail(op, "cannot write '", path, "': ", std::strerror(err));
  }
}

}  // namespace ladon::train
