// Errors: every mistake a user can make throws ladon::Error naming the op and the values involved.
#pragma once

#include "layer_fence.h"

#include <sstream>
#include <stdexcept>
#include <string>

namespace ladon {

class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

namespace detail {
template <typename... Parts>
[[noreturn]] void fail(const char* op, const Parts&... parts) {
  std::ostringstream message;
  message << op << ": ";
  (message << ... << parts);
  throw Error(message.str());
}
}  // namespace detail

}  // namespace ladon

// LADON_CHECK(cond, "op", parts...) throws ladon::Error("op: " + parts) when cond is false. The
// message parts are only formatted on failure, so checks cost one branch on the hot path.
#define LADON_CHECK(cond, op, ...)                        \
  do {                                                    \
    if (!(cond)) [[unlikely]]                             \
      ::ladon::detail::fail(op __VA_OPT__(, ) __VA_ARGS__); \
  } while (false)
