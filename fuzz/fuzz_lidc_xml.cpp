// libFuzzer: medical::read_lidc_xml (pugixml, then the LIDC structure checks) on arbitrary
// bytes.
#include "fuzz_common.h"
#include "qiusuo/medical/lidc.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = qs::fuzz::as_file(data, size, "x.xml");
  qs::fuzz::refusals_ok([&] { qs::medical::read_lidc_xml(path); });
  return 0;
}
