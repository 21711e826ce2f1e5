// libFuzzer: io::load_checkpoint (a safetensors file whose metadata carries JSON fields).
#include "fuzz_common.h"
#include "qiusuo/io/checkpoint.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = qs::fuzz::as_file(data, size, "x.ckpt");
  qs::fuzz::refusals_ok([&] { qs::io::load_checkpoint(path); });
  return 0;
}
