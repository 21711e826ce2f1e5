// Set by the optimised kernels (src/kernels/cpu/quant_pack.cpp) to empty their cache of
// pre-packed weights; null in the reference-only build.
#pragma once

namespace qs::quant::detail {
extern void (*clear_packed_hook)();
}
