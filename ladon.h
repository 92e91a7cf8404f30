// The whole public API of ladon: #include <ladon/ladon.h>.
#pragma once

#include "core/autograd.h"
#include "core/error.h"
#include "core/gradcheck.h"
#include "core/ops.h"
#include "core/parallel.h"
#include "core/random.h"
#include "core/storage.h"
#include "core/tensor.h"
