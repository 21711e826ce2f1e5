// DICOM CT series through Debian's DCMTK: a folder of slice files read into one Volume in
// Hounsfield units, and a Volume written as a CT series (the synthetic data's files).
//
//   medical::DicomSeries s = medical::read_dicom_series("LIDC-IDRI-0001/.../3000566.000000-03192");
//   medical::write_dicom_series("out/series", volume, {.patient_id = "SYN-0001"});
//
// Reading follows what radiology software does with a CT series:
//   - slices are sorted by their ImagePositionPatient projected on the slice normal (the
//     cross product of ImageOrientationPatient's row and column directions), not by file
//     name or InstanceNumber;
//   - stored values become HU by each slice's RescaleSlope / RescaleIntercept, after
//     BitsStored / HighBit / PixelRepresentation are applied;
//   - the voxel size is PixelSpacing within a slice and the distance between neighbouring
//     slice positions across them (SliceThickness is not spacing);
//   - compressed transfer syntaxes that DCMTK decodes (JPEG baseline/extended/lossless,
//     JPEG-LS, RLE) are decompressed first.
#pragma once
#include <string>
#include <vector>

#include "qiusuo/medical/volume.h"

namespace qs::medical {

struct DicomSeries {
  Volume volume;  // HU; affine from the positions and orientation (LPS turned into RAS)
  std::string patient_id, study_uid, series_uid;
  std::vector<std::string> files;     // per slice k, after sorting
  std::vector<std::string> sop_uids;  // per slice k (LIDC's XML names slices by these)
  std::vector<double> positions;      // per slice k: mm along the slice normal, increasing
  std::string transfer_syntax;        // of the first slice as stored, e.g. "JPEG-LS Lossless"
};

struct DicomReadOptions {
  std::string series_uid;        // which series of a folder holding several ("": the only one)
  bool require_ct = true;        // Modality must be CT
  double spacing_tolerance = 0.05;  // largest relative deviation of a slice gap from the median
  int64_t max_voxels = int64_t(1) << 30;
};

// Reads every DICOM file directly in `dir` (other files, such as LIDC's XML, are skipped)
// belonging to the series. Errors (IOError naming the file): no DICOM file; several series
// without a choice; a modality other than CT; a slice missing (a gap of about twice the
// others) or duplicated (two at one position); inconsistent spacing; slices of different
// sizes, orientations or pixel spacings; a missing or malformed required attribute
// (ImagePositionPatient, ImageOrientationPatient, PixelSpacing, Rows, Columns,
// BitsAllocated, BitsStored, HighBit, PixelRepresentation); BitsAllocated other than 8 or
// 16, BitsStored > BitsAllocated or HighBit >= BitsAllocated; more than one sample per
// pixel or a photometric interpretation other than MONOCHROME1/2; pixel data shorter than
// Rows x Columns x BitsAllocated / 8 (or longer than the file); a transfer syntax DCMTK
// cannot decode; over max_voxels.
DicomSeries read_dicom_series(const std::string& dir, const DicomReadOptions& opt = {});

struct DicomWriteOptions {
  std::string patient_id = "ANONYMOUS";
  std::string study_uid, series_uid;  // "" : derived from uid_seed
  uint64_t uid_seed = 0;              // UIDs "2.25.<number>" from this seed: the same seed, the same UIDs
  // "explicit-little" (Explicit VR Little Endian), "implicit-little", "jpeg-ls-lossless",
  // "jpeg-lossless" (JPEG Process 14, first-order prediction) or "rle" (the three lossless
  // compressions, through DCMTK's encoders).
  std::string transfer_syntax = "explicit-little";
  std::string series_description = "qiusuo";
};

// Writes one CT Image Storage file per slice ("<dir>/slice_0001.dcm", ...): stored values
// u16 with RescaleIntercept -1024 and slope 1 (HU rounded and clamped to [-1024, 64511]),
// ImagePositionPatient / ImageOrientationPatient / PixelSpacing from v.affine (whose
// columns must be orthogonal, the slice axis along the row x column normal), InstanceNumber
// 1.., each file atomic. Returns the series as read_dicom_series would describe it (files,
// SOP instance UIDs and positions per slice; the volume is v). Errors: voxels not f32
// [D, H, W], an affine with non-orthogonal columns or a left-handed one, an unknown transfer
// syntax, a write failure.
DicomSeries write_dicom_series(const std::string& dir, const Volume& v, const DicomWriteOptions& opt = {});

}  // namespace qs::medical
