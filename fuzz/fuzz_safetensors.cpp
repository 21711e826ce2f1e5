// libFuzzer: io::load_safetensors on arbitrary bytes (headers, offsets, dtypes, sizes).
#include "fuzz_common.h"
#include "qiusuo/io/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = qs::fuzz::as_file(data, size, "x.safetensors");
  qs::fuzz::refusals_ok([&] { qs::io::load_safetensors(path); });
  return 0;
}
