// Data augmentation on batches of images [N, C, H, W] (any float dtype), drawn from a
// seed so that a resumed run sees the same augmented batches as an uninterrupted one.
#pragma once
#include <cstdint>

#include "qiusuo/tensor.h"

namespace qs::data {

// A contiguous copy of `images` [N, C, H, W] in which each sample, independently with
// probability 1/2 (coins from Generator(seed)), is mirrored left to right (along W).
// Errors: not 4-dim, not f32/f64.
Tensor random_hflip(const Tensor& images, uint64_t seed);

}  // namespace qs::data
