// libFuzzer: medical::read_nifti (libnifti2's header parse, then qiusuo's size checks and
// chunked voxel read) on arbitrary bytes, plain and gzip-named.
#include "fuzz_common.h"
#include "qiusuo/medical/nifti.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = qs::fuzz::as_file(data, size, "x.nii");
  qs::fuzz::refusals_ok([&] { qs::medical::read_nifti(path, nullptr, int64_t(1) << 22); });
  return 0;
}
