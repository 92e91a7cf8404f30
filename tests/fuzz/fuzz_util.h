// Shared by the libFuzzer targets: the readers take a path, so each input goes to an in-memory file
// (memfd) that they open through /proc/self/fd.
#pragma once

#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <string>

namespace ladon::fuzz {

// One memfd per process, rewritten for every input.
inline std::string write_input(const void* data, std::size_t size) {
  static const int fd = ::memfd_create("ladon-fuzz", 0);
  if (fd < 0) std::abort();
  if (::ftruncate(fd, 0) != 0) std::abort();
  const auto* p = static_cast<const char*>(data);
  std::size_t done = 0;
  while (done < size) {
    const ssize_t w = ::pwrite(fd, p + done, size - done, static_cast<off_t>(done));
    if (w <= 0) std::abort();
    done += static_cast<std::size_t>(w);
  }
  return "/proc/self/fd/" + std::to_string(fd);
}

}  // namespace ladon::fuzz
