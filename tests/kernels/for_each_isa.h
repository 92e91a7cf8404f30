// Runs a check once under every instruction set this CPU supports, so a kernel test covers each
// compiled variant (kernels/isa.h), not only the one CPUID picks.
#pragma once

#include <doctest/doctest.h>

#include "kernels/isa.h"

namespace ladon::testing {

template <typename F>
void for_each_isa(F&& check) {
  using kernels::Isa;
  for (Isa isa : kernels::kIsas) {
    if (!kernels::isa_supported(isa)) continue;
    INFO("instruction set: " << kernels::isa_name(isa));
    const kernels::IsaOverride use(isa);
    check();
  }
}

}  // namespace ladon::testing
