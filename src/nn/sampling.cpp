// Next-token sampling: temperature, top-k, top-p, then one uniform draw.
#include "qiusuo/nn/sampling.h"

#include <cmath>

#include "qiusuo/autograd.h"
#include "qiusuo/ops.h"

namespace qs::nn {

namespace {

void check_options(const SamplingOptions& o) {
  QS_CHECK(std::isfinite(o.temperature) && o.temperature >= 0,
           "sample_token: temperature must be finite and >= 0, got {}", o.temperature);
  QS_CHECK(o.top_k >= 0, "sample_token: top_k must be >= 0 (0 = all tokens), got {}", o.top_k);
  QS_CHECK(o.top_p > 0 && o.top_p <= 1, "sample_token: top_p must be in (0, 1], got {}", o.top_p);
}

void check_logits(const std::vector<double>& v) {
  bool any = false;
  for (size_t i = 0; i < v.size(); ++i) {
    QS_CHECK(!std::isnan(v[i]) && v[i] != INFINITY, "sample_token: logit {} of token {} is not allowed (NaN or +inf)",
             v[i], i);
    any = any || v[i] != -INFINITY;
  }
  QS_CHECK(any, "sample_token: every logit is -inf; no token can be drawn");
}

int64_t greedy(const std::vector<double>& v) {
  size_t best = 0;
  for (size_t i = 1; i < v.size(); ++i)
    if (v[i] > v[best]) best = i;
  return int64_t(best);
}

}  // namespace

int64_t sample_token(const Tensor& logits, const SamplingOptions& opts, Generator& gen) {
  check_options(opts);
  QS_CHECK(logits.defined() && logits.dim() == 1 && logits.numel() > 0 && logits.is_floating_point(),
           "sample_token: logits must be a non-empty 1-d floating tensor [V], got {}",
           logits.defined() ? shape_str(logits.shape()) : std::string("an undefined tensor"));
  NoGrad ng;
  std::vector<double> all = logits.to_vector();
  check_logits(all);
  if (opts.temperature == 0) return greedy(all);
  const int64_t V = logits.numel();
  // Candidates in rank order (best first). Without top-k or top-p the order does not
  // matter, and the sort is skipped.
  std::vector<double> l;
  std::vector<int64_t> ids;
  const int64_t k = opts.top_k > 0 ? std::min(opts.top_k, V) : V;
  if (k < V || opts.top_p < 1) {
    ValuesIndices top = topk(logits.detach(), k);
    l = top.values.to_vector();
    ids = top.indices.to_vector_as<int64_t>();
  } else {
    l = all;
    for (int64_t i = 0; i < V; ++i) ids.push_back(i);
  }
  double mx = -INFINITY;
  for (double x : l) mx = std::max(mx, x);
  std::vector<double> p(l.size());
  double total = 0;
  for (size_t i = 0; i < l.size(); ++i) total += p[i] = std::exp((l[i] - mx) / opts.temperature);
  size_t keep = p.size();
  if (opts.top_p < 1) {  // the shortest prefix of the ranked tokens reaching top_p
    double cum = 0;
    for (keep = 0; keep < p.size();)
      if ((cum += p[keep++]) >= opts.top_p * total) break;
  }
  double mass = 0;
  for (size_t i = 0; i < keep; ++i) mass += p[i];
  double u = gen.next_double() * mass, cum = 0;
  for (size_t i = 0; i < keep; ++i)
    if (p[i] > 0 && (cum += p[i]) > u) return ids[i];
  for (size_t i = keep; i-- > 0;)  // u rounded up to the mass: the last token with probability
    if (p[i] > 0) return ids[i];
  return ids[0];
}

std::vector<int64_t> sample_tokens(const Tensor& logits, const SamplingOptions& opts, Generator& gen) {
  QS_CHECK(logits.defined() && logits.dim() == 2, "sample_tokens: logits must be [b, V], got {}",
           logits.defined() ? shape_str(logits.shape()) : std::string("an undefined tensor"));
  std::vector<int64_t> out;
  for (int64_t b = 0; b < logits.size(0); ++b) out.push_back(sample_token(logits.select(0, b), opts, gen));
  return out;
}

}  // namespace qs::nn
