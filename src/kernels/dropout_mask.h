// The dropout mask as a pure function of (seed, element index): a counter-based hash
// (SplitMix64's finaliser) turned into a uniform double in [0, 1). The reference, the
// optimised kernel and the backward all regenerate the same mask from the seed.
#pragma once
#include <cstdint>

namespace qs::kernels {

inline uint64_t splitmix64(uint64_t z) {
  z += 0x9e3779b97f4a7c15ull;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}
// True if element i (row-major logical index) is kept when dropping with probability p.
inline bool dropout_keep(uint64_t seed, int64_t i, double p) {
  uint64_t h = splitmix64(splitmix64(seed) ^ uint64_t(i));
  return double(h >> 11) * 0x1.0p-53 >= p;
}
// The factor element i is multiplied by: 1/(1-p) if kept, else 0.
inline double dropout_factor(uint64_t seed, int64_t i, double p) {
  return dropout_keep(seed, i, p) ? 1.0 / (1.0 - p) : 0.0;
}

}  // namespace qs::kernels
