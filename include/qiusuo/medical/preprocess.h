// From a CT volume to the patches a 3D network learns from (docs/ct.md): resampling to
// isotropic voxels, Hounsfield windowing, patches around nodule centres, augmentation, and
// patient-level splits. Plain CPU code on contiguous f32 volumes (data preparation, not
// differentiable ops).
#pragma once
#include <array>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "qiusuo/medical/volume.h"

namespace qs::medical {

// Trilinear resampling to voxels of `spacing` mm along i, j, k (the affine's column norms),
// keeping voxel (0, 0, 0)'s position and the axes' directions, as SimpleITK's resampler with
// the same origin and MONAI's Spacing do. The new grid covers the old one's extent:
// n' = floor((n - 1) * old / new) + 1 voxels per axis, so every sample lies inside the old
// grid (no extrapolation). Separable: three 1D linear passes, which is exactly trilinear.
// Errors: a spacing not positive, a grid over 2^31 voxels.
Volume resample(const Volume& v, const std::array<double, 3>& spacing);

// HU clipped to [lo, hi] and mapped linearly to [0, 1] (lung window: -1000, 400).
Tensor window(const Tensor& hu, double lo, double hi);

// The [size_k, size_j, size_i] block of v.voxels centred on voxel `centre` (i, j, k; rounded
// to the nearest voxel), with `fill` (air, -1024 HU) where it reaches outside the volume.
Tensor extract_patch(const Volume& v, const std::array<double, 3>& centre, const std::array<int64_t, 3>& size,
                     float fill = -1024.0f);

// A cube of `size_mm` around voxel `centre` (i, j, k), sampled on `voxels`^3 isotropic voxels
// (size_mm / voxels mm): the region around the centre is cropped (air outside the volume),
// resampled as resample() does, and the cube cut around the centre. [voxels, voxels, voxels].
Tensor patch_mm(const Volume& v, const std::array<double, 3>& centre, double size_mm, int64_t voxels);

struct AugmentOptions {
  bool flips = true;          // each axis mirrored with probability 1/2
  bool rotate90 = true;       // a random multiple of 90 degrees in the axial (i, j) plane (needs rows == columns)
  int64_t shift = 2;          // a random shift of up to this many voxels per axis, filled with the edge value
  double intensity = 0.1;     // x -> x * (1 + u * a) + u' * a for u, u' uniform in [-1, 1] (on windowed [0, 1] values)
  double noise = 0.02;        // plus N(0, noise^2) per voxel
};
// A randomly transformed copy of a patch [D, H, W] (the same generator state, the same
// result). Errors: not 3D f32; rotate90 with H != W.
Tensor augment(const Tensor& patch, Generator& gen, const AugmentOptions& opt = {});

// Assigns every patient to one split by a seeded shuffle of the distinct IDs: the first
// round(fractions[0] * n) to split 0, and so on, the rest to the last split, so that no
// patient's nodules land in two splits. Returns split index by patient ID. Errors: fractions
// negative or summing over 1.
std::map<std::string, int> split_patients(const std::vector<std::string>& patient_ids,
                                          const std::vector<double>& fractions, uint64_t seed);

}  // namespace qs::medical
