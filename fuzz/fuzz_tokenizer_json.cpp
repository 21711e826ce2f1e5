// libFuzzer: text::load_tokenizer on arbitrary tokenizer.json text, then an encode and a
// decode with whatever it accepted.
#include <string_view>

#include "fuzz_common.h"
#include "qiusuo/text/tokenizer.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  qs::fuzz::refusals_ok([&] {
    auto tok = qs::text::load_tokenizer(text);
    auto ids = tok->encode("In the beginning God created the heaven and the earth. \xc3\xa9\xe4\xb8\xad");
    (void)tok->decode(ids);
  });
  return 0;
}
