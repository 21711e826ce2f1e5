// libFuzzer: medical::read_dicom_series (DCMTK's parser and codecs, then qiusuo's series
// checks) on a folder holding one arbitrary file.
#include "fuzz_common.h"
#include "qiusuo/medical/dicom.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = qs::fuzz::as_file(data, size, "slice.dcm");
  const std::string dir = path.substr(0, path.rfind('/'));
  qs::fuzz::refusals_ok([&] { qs::medical::read_dicom_series(dir, {.max_voxels = int64_t(1) << 22}); });
  return 0;
}
