// Synthetic chest CT with lung nodules, for the tests and the demo (docs/ct.md): LIDC-IDRI
// cannot be downloaded here, so qiusuo makes data of the same kind and writes it as LIDC
// distributes it (a DICOM series and a reader XML per case, in TCIA's folder layout), plus
// a NIfTI file per case, so that the whole pipeline runs from files through the real readers.
//
// A case: a body (fat, muscle, a chest wall with ribs) around two lungs of parenchyma
// (about -850 HU with a smooth texture), branching vessels, the mediastinum, CT noise, and
// 1 to 3 nodules. Each nodule has a latent malignancy z in [0, 1]; as in the radiology
// literature on LIDC (and by construction here), malignant-looking nodules are larger,
// spiculated, lobulated and ill-defined, and benign-looking ones small, round, sharp and
// sometimes calcified. Four simulated readers each mark a nodule with probability 0.9,
// outline it slice by slice, and rate its malignancy 1-5 as round(1 + 4 z) plus reader
// noise. The data are made to be learnable, not to match LIDC's statistics.
#pragma once
#include <array>
#include <string>
#include <vector>

#include "qiusuo/medical/lidc.h"
#include "qiusuo/medical/volume.h"

namespace qs::medical {

struct SynthNodule {
  std::array<double, 3> centre{};  // voxel (i, j, k)
  double diameter_mm = 0, z = 0;   // z: the latent malignancy
  double spiculation = 0, lobulation = 0, margin_mm = 0;  // spicule length / R, harmonic amplitude, edge width
  double density_hu = 0;            // core attenuation (ground glass about -500, solid about 30, calcified > 200)
};

struct SynthOptions {
  int64_t slices = 48, rows = 128, columns = 128;
  double pixel_mm = 1.2, slice_mm = 2.0;
  int min_nodules = 1, max_nodules = 3;
  int readers = 4;
  double noise_hu = 15;
  uint64_t seed = 0;
};

struct SynthCase {
  std::string patient_id;  // "LIDC-SYN-0001"
  Volume volume;           // HU
  std::vector<SynthNodule> nodules;
  // The readers' marks with slice indices: LidcRoi::sop_uid holds the slice index as text
  // until the series is written (write_synth_dataset puts the UIDs and z positions in).
  LidcRead read;
};

// Case `index` (0-based) of the data set of opt.seed: the same arguments, the same case.
SynthCase synth_case(int index, const SynthOptions& opt = {});

struct SynthSummary {
  int cases = 0, nodules = 0, malignant = 0, benign = 0, excluded = 0;  // by the default label rule
};

// Writes `cases` cases under `dir`:
//   dir/LIDC-SYN-0001/01-01-2000-SYN-0001/3000001.000000-SYN-0001/slice_0001.dcm ... + 069.xml
//   dir/nifti/LIDC-SYN-0001.nii.gz
//   dir/truth.json  (every nodule: centre, diameter, latent z, features, the readers' ratings)
// `transfer_syntax` as write_dicom_series's. Errors: write failures.
SynthSummary write_synth_dataset(const std::string& dir, int cases, const SynthOptions& opt = {},
                                 const std::string& transfer_syntax = "explicit-little");

}  // namespace qs::medical
