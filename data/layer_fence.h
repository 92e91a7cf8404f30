// Included first by every data/ header. Each layer's static_library compiles with its
// LADON_LAYER_<NAME> defined (see its meson.build), so a file of a layer that may not use this
// one fails to compile when it reaches a data/ header, directly or through another header.
// Programs (tests, examples, bench, users) define none and may include everything.
#pragma once

#ifdef LADON_LAYER_KERNELS
#error "layering: kernels/ must not include data/ (tests/layering.sh lists what each layer may include)"
#endif
#ifdef LADON_LAYER_CORE
#error "layering: core/ must not include data/ (tests/layering.sh lists what each layer may include)"
#endif
#ifdef LADON_LAYER_NN
#error "layering: nn/ must not include data/ (tests/layering.sh lists what each layer may include)"
#endif
#ifdef LADON_LAYER_MTL
#error "layering: mtl/ must not include data/ (tests/layering.sh lists what each layer may include)"
#endif
