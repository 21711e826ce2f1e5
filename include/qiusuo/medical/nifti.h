// NIfTI-1 and NIfTI-2 volumes (.nii, .nii.gz), through Debian's libnifti2 (nifti2_io.h).
//
//   medical::Volume v = medical::read_nifti("ct.nii.gz");
//   medical::write_nifti("out.nii.gz", v, {.version = 2});
//
// The header is parsed by libnifti; the voxel data is read here, in bounded chunks, so that
// a header declaring more data than the file holds costs no allocation of the declared
// size. Orientation follows the standard's precedence: the sform when its code is set,
// else the qform (a quaternion with offsets and qfac), else the voxel sizes alone (the
// ANALYZE fallback, "method 1").
#pragma once
#include <string>

#include "qiusuo/medical/volume.h"

namespace qs::medical {

struct NiftiInfo {
  int version = 1;          // 1 or 2
  int datatype = 0;         // NIfTI's DT_* code as stored
  int qform_code = 0, sform_code = 0;
  std::string orientation;  // "sform", "qform" or "pixdim": where the affine came from
  double scl_slope = 1, scl_inter = 0;  // as applied (slope 0 in the file means none)
};

// The largest volume read_nifti accepts by default: 2^30 voxels (4 GiB as f32).
constexpr int64_t kNiftiMaxVoxels = int64_t(1) << 30;

// Reads a 3D volume (or a 4D one with a single time point; a 2D image as one slice) and
// converts its voxels to f32 with scl_slope / scl_inter applied. Integer types u8, i8,
// u16, i16, i32 and floats f32, f64 are read, in either byte order.
// Errors (IOError naming the file): not a NIfTI-1/2 file, a damaged header, more than
// one volume (4D with t > 1, or higher dims), an unsupported datatype, a size overflowing
// or over max_voxels, a file (or, for .gz, a gzip stream) holding fewer bytes than the
// header declares, a non-finite or singular affine.
Volume read_nifti(const std::string& path, NiftiInfo* info = nullptr, int64_t max_voxels = kNiftiMaxVoxels);

struct NiftiWriteOptions {
  int version = 1;      // 1: NIfTI-1 (348-byte header); 2: NIfTI-2 (540 bytes, 64-bit sizes)
  bool int16 = true;    // i16 voxels, rounded and clamped (CT in HU); false: f32
};

// Writes `v` with both the sform and the qform set from v.affine (code 1, scanner
// anatomical; the qform is the affine's nearest rotation with its voxel sizes), .nii or
// .nii.gz by the name. Atomic: the file appears complete or not at all.
// Errors: a name without .nii / .nii.gz, voxels that are not f32 [D, H, W], a write failure.
void write_nifti(const std::string& path, const Volume& v, const NiftiWriteOptions& opt = {});

}  // namespace qs::medical
