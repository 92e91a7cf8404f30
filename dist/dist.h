// The distributed layer of ladon, over MPI: #include <ladon/dist/dist.h> (needs mpi.h, so it is not
// part of ladon.h; installed only when ladon was built with MPI).
#pragma once

#include "layer_fence.h"

#include "checkpoint.h"
#include "collective.h"
#include "comm.h"
#include "data_parallel.h"
#include "expert_parallel.h"
#include "ops.h"
#include "sampler.h"
