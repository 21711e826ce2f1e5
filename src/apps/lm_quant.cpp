// Quantised language models: resident-memory measurement of a (quantised) LM checkpoint.
#include "qiusuo/apps/lm.h"
#include "qiusuo/autograd.h"
#include "qiusuo/ops.h"

namespace qs::apps {

ResidentGrowth lm_resident_growth(const std::string& path) {
  LoadedLm lm;
  return resident_growth([&] {
    lm = load_lm(path);
    const nn::LMConfig& c = lm.model->config();
    NoGrad ng;
    (*lm.model)(zeros({1, c.max_seq_len}, DType::i64));
  });
}

}  // namespace qs::apps
