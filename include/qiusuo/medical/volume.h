// A 3D scalar image placed in patient space: what the CT application reads from DICOM
// series and NIfTI files (docs/ct.md).
//
// Voxel (i, j, k) is voxels[k][j][i]: i runs along a row (DICOM's columns, NIfTI's x), j
// down the rows, k across slices; i is fastest in memory, as in both file formats.
// World coordinates are millimetres in RAS+, NIfTI's convention: +x towards the patient's
// right, +y anterior, +z superior. DICOM's patient coordinates are LPS+ (+x left, +y
// posterior), so a DICOM position (x, y, z) is (-x, -y, z) here.
#pragma once
#include <array>
#include <string>

#include "qiusuo/tensor.h"

namespace qs::medical {

using Affine = std::array<std::array<double, 4>, 4>;

struct Volume {
  Tensor voxels;  // f32 [slices, rows, columns]; CT in Hounsfield units
  Affine affine{};  // (i, j, k, 1) -> (x, y, z, 1), RAS+ millimetres
  std::string modality;  // DICOM's Modality ("CT"); "" where the file does not say (NIfTI)

  int64_t slices() const { return voxels.size(0); }
  int64_t rows() const { return voxels.size(1); }
  int64_t columns() const { return voxels.size(2); }
  // Millimetres between neighbouring voxels along i, j and k: the norms of the affine's
  // first three columns.
  std::array<double, 3> spacing() const;
  // The world position (mm) of voxel (i, j, k).
  std::array<double, 3> world(double i, double j, double k) const;
};

// The affine of a grid with these voxel sizes along i, j, k, its axes along the world's,
// and voxel (0, 0, 0) at `origin`.
Affine axis_aligned(const std::array<double, 3>& spacing, const std::array<double, 3>& origin = {0, 0, 0});

}  // namespace qs::medical
