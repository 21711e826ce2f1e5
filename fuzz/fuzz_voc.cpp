// libFuzzer: defect::parse_voc (pugixml, then the VOC structure and box checks) on
// arbitrary bytes.
#include "fuzz_common.h"
#include "qiusuo/defect/voc.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string xml(reinterpret_cast<const char*>(data), size);
  qs::fuzz::refusals_ok([&] { qs::defect::parse_voc(xml, "x.xml"); });
  return 0;
}
