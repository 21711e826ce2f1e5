// libFuzzer: viz::decode_image (the header check, then libpng, libjpeg-turbo or stb_image's
// BMP decoder) on arbitrary bytes.
#include "fuzz_common.h"
#include "qiusuo/viz/image.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string bytes(reinterpret_cast<const char*>(data), size);
  qs::fuzz::refusals_ok([&] { qs::viz::decode_image(bytes, "x"); });
  return 0;
}
