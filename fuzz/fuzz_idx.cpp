// libFuzzer: data::read_idx (IDX headers, dims, gzip) on arbitrary bytes.
#include "fuzz_common.h"
#include "qiusuo/data/idx.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = qs::fuzz::as_file(data, size, "x.idx");
  qs::fuzz::refusals_ok([&] { qs::data::read_idx(path); });
  return 0;
}
