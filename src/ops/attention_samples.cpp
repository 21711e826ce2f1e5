// Sample inputs for the attention rows: every option alone and in combination, odd
// sizes, GQA / MQA, MLA-like dk != dv, causal with a KV-cache offset (n < m), strided
// q/k/v taken from a packed qkv tensor, fully masked rows, tiles crossing 64, and the few
// query rows of decoding against long caches.
#include "kernels/attention_common.h"
#include "kernels/ref/ref_kernels.h"
#include "ops/samples.h"
#include "qiusuo/ops.h"

namespace qs::ops {

using kernels::AttnConfig;
using kernels::AttnRel;

namespace {

struct AttnCase {
  const char* label;
  int64_t b, hq, hkv, n, m, dk, dv;
  bool causal = false, padding = false, alibi = false;
  AttnRel rel = AttnRel::none;
  bool bidirectional = false, bucket_weights = false, packed = false;
  int64_t max_distance = 3;
  bool half_kv = false;  // k and v in f16 (a half-precision KV cache; f32 q, forward only)
};

std::vector<AttnCase> attention_cases(DType dt) {
  std::vector<AttnCase> cs = {
      {"n=m=d=1", 1, 1, 1, 1, 1, 1, 1},
      {"3 heads n=3 m=7 d=5", 1, 3, 3, 3, 7, 5, 5},
      {"gqa 4/2 causal n=7", 2, 4, 2, 7, 7, 3, 3, true},
      {"causal kv offset n=3 m=17", 1, 2, 1, 3, 17, 4, 4, true},
      {"padding, fully masked rows", 2, 2, 2, 3, 7, 3, 3, true, true},
      {"alibi causal", 1, 4, 2, 7, 7, 3, 3, true, false, true},
      {"t5 causal", 1, 2, 2, 7, 9, 3, 3, true, false, false, AttnRel::t5, false, false, false, 6},
      {"t5 bidirectional padding alibi", 2, 2, 1, 5, 7, 3, 3, false, true, true, AttnRel::t5, true, false, false, 5},
      {"shaw", 1, 2, 2, 5, 5, 3, 3, false, false, false, AttnRel::shaw},
      {"shaw causal bucket_weights", 2, 2, 1, 5, 7, 3, 3, true, true, false, AttnRel::shaw, false, true},
      {"mla dk 12 dv 8 mqa", 1, 3, 1, 5, 7, 12, 8, true},
      {"packed qkv (strided)", 2, 3, 3, 7, 7, 4, 4, true, false, false, AttnRel::none, false, false, true},
      {"tiles n=67 m=131 gqa causal", 1, 2, 1, 67, 131, 5, 3, true},
      {"tiles shaw bucket_weights t=70", 1, 1, 1, 70, 70, 2, 3, false, true, false, AttnRel::shaw, false, true, false,
       5},
      // n <= 4: the decoding path (one pass of scores per row): cache lengths across tiles,
      // every mask and bias, GQA / MQA, dk != dv
      {"decode n=1 m=300 gqa 8/2 causal", 1, 8, 2, 1, 300, 16, 16, true},
      {"decode n=4 m=130 padding alibi causal", 2, 4, 2, 4, 130, 6, 5, true, true, true},
      {"decode n=1 m=70 t5 causal", 1, 2, 2, 1, 70, 8, 8, true, false, false, AttnRel::t5, false, false, false, 6},
      {"decode n=2 m=70 shaw causal", 1, 2, 1, 2, 70, 5, 5, true, false, false, AttnRel::shaw},
      {"decode n=1 m=65 mqa dk 24 dv 16", 1, 4, 1, 1, 65, 24, 16, true},
      {"decode n=1 m=9 bidirectional padding", 2, 2, 2, 1, 9, 3, 3, false, true},
  };
  if (dt == DType::f32) {
    cs.push_back({"realistic b2 h4 n127 d32 causal", 2, 4, 4, 127, 127, 32, 32, true});
    cs.push_back({"lm b1 h8 n256 d32 packed", 1, 8, 8, 256, 256, 32, 32, true, false, false, AttnRel::none, false,
                  false, true});
    // dv a multiple of 16: the register-blocked f32 kernel (attention_cpu_fast.cpp), with every mask.
    cs.push_back({"blocked gqa padding alibi kv offset n=67 m=131 dk 7 dv 16", 2, 4, 2, 67, 131, 7, 16, true, true,
                  true});
    cs.push_back({"blocked t5 bidirectional n=33 dv 32", 1, 2, 2, 33, 33, 5, 32, false, false, false, AttnRel::t5,
                  true, false, false, 6});
    cs.push_back({"blocked shaw causal n=17 dv 16", 1, 2, 1, 17, 17, 3, 16, true, false, false, AttnRel::shaw});
    // dv 48: the AVX-512 build's 32-column strips with a last strip of 16; n = 45 rows, 12 a block
    cs.push_back({"blocked mqa causal kv offset n=45 m=50 dk 40 dv 48", 1, 3, 1, 45, 50, 40, 48, true});
    // dk and dv multiples of 16 without relative biases: the register-blocked backward too
    cs.push_back({"blocked gqa padding alibi kv offset n=67 m=131 dk 16 dv 32", 2, 4, 2, 67, 131, 16, 32, true, true,
                  true});
    cs.push_back({"blocked bidirectional mqa n=40 m=70 dk 32 dv 48", 1, 3, 1, 40, 70, 32, 48});
    // f16 keys and values: the decoding path reads them as f16 (F16C), other paths widen them
    cs.push_back({"f16 kv decode n=1 m=300 gqa 8/2 causal", 1, 8, 2, 1, 300, 16, 16, true, false, false,
                  AttnRel::none, false, false, false, 3, true});
    cs.push_back({"f16 kv decode n=3 m=70 padding alibi dk 20 dv 40", 2, 4, 2, 3, 70, 20, 40, true, true, true,
                  AttnRel::none, false, false, false, 3, true});
    cs.push_back({"f16 kv decode n=1 m=65 t5 dv 64", 1, 2, 2, 1, 65, 8, 64, true, false, false, AttnRel::t5, false,
                  false, false, 6, true});
    cs.push_back({"f16 kv n=9 m=40 causal (widened)", 1, 2, 1, 9, 40, 8, 8, true, false, false, AttnRel::none, false,
                  false, false, 3, true});
  }
  return cs;
}

Attrs case_attrs(const AttnCase& k) {
  AttnConfig c{};
  c.scale = 1.0 / std::sqrt(double(k.dk));
  c.causal = k.causal;
  c.rel = k.rel;
  c.num_buckets = 8;
  c.max_distance = k.max_distance;
  c.bidirectional = k.bidirectional;
  c.bucket_weights = k.bucket_weights;
  return kernels::attn_attrs(c);
}

// Key padding: batch 0 pads its first key (with causal, its first row sees nothing),
// batch 1 pads every key (all its rows are fully masked), further batches pad the last key.
Tensor case_padding(const AttnCase& k) {
  std::vector<double> pad(size_t(k.b * k.m), 0.0);
  pad[0] = 1.0;
  for (int64_t b = 1; b < k.b; ++b)
    for (int64_t j = 0; j < k.m; ++j) pad[size_t(b * k.m + j)] = b == 1 || j == k.m - 1 ? 1.0 : 0.0;
  return from_vector(pad, {k.b, k.m}, DType::b8);
}

}  // namespace

std::vector<Sample> attention_samples(DType dt, Generator& gen) {
  std::vector<Sample> s;
  for (const AttnCase& k : attention_cases(dt)) {
    Tensor q, key, v;
    if (k.packed) {  // q, k, v = qkv.view(b, n, 3, h, d).permute(2, 0, 3, 1, 4)
      Tensor qkv = sample_uniform({k.b, k.n, 3, k.hq, k.dk}, dt, gen, -1.5, 1.5).permute({2, 0, 3, 1, 4});
      q = qkv.select(0, 0), key = qkv.select(0, 1), v = qkv.select(0, 2);
    } else {
      q = sample_uniform({k.b, k.hq, k.n, k.dk}, dt, gen, -1.5, 1.5);
      key = sample_uniform({k.b, k.hkv, k.m, k.dk}, dt, gen, -1.5, 1.5);
      v = sample_uniform({k.b, k.hkv, k.m, k.dv}, dt, gen);
    }
    Tensor pad = k.padding ? case_padding(k) : Tensor();
    Tensor slopes = k.alibi ? alibi_slopes(k.hq).to(dt) : Tensor();
    Tensor rel;
    if (k.rel == AttnRel::t5) rel = sample_uniform({k.hq, 8}, dt, gen, -1, 1);
    if (k.rel == AttnRel::shaw) rel = sample_uniform({k.b, k.hq, k.n, 2 * k.max_distance + 1}, dt, gen, -1, 1);
    std::vector<int> grads = {0, 1, 2};
    if (rel.defined()) grads.push_back(5);
    if (k.half_kv) key = key.to(DType::f16), v = v.to(DType::f16), grads.clear();
    s.push_back({{q, key, v, pad, slopes, rel}, case_attrs(k), k.label, grads});
  }
  return s;
}

namespace {
// The forward outputs of a sample, from the reference kernel.
std::vector<Tensor> reference_forward(const Sample& f) {
  OpCall call{OpKind::attention, f.in, f.attrs, {}};
  for (auto& sp : run_meta(call)) call.out.push_back(empty_output(sp));
  kernels::attention_ref(call);
  return call.out;
}
}  // namespace

std::vector<Sample> attention_backward_samples(DType dt, Generator& gen) {
  std::vector<Sample> s;
  for (const Sample& f : attention_samples(dt, gen)) {
    if (f.in[1].dtype() != f.in[0].dtype()) continue;  // f16 keys and values: forward only
    auto o = reference_forward(f);
    bool bw = f.attrs.b("return_bucket_weights");
    Tensor dout = sample_uniform(o[0].shape(), dt, gen), dlse = sample_uniform(o[1].shape(), dt, gen);
    Tensor dbw = bw ? sample_uniform(o[2].shape(), dt, gen) : Tensor();
    s.push_back({{dout, dlse, dbw, f.in[0], f.in[1], f.in[2], o[0], o[1], bw ? o[2] : Tensor(), f.in[3], f.in[4],
                  f.in[5]},
                 f.attrs, f.label, {}});
  }
  return s;
}

std::vector<Sample> attention_weights_samples(DType dt, Generator& gen) {
  std::vector<Sample> s;
  for (const Sample& f : attention_samples(dt, gen)) {
    if (f.in[1].dtype() != f.in[0].dtype()) continue;  // the weights take one dtype
    auto o = reference_forward(f);
    s.push_back({{f.in[0], f.in[1], f.in[3], f.in[4], f.in[5], o[1]}, f.attrs, f.label, {}});
  }
  return s;
}

}  // namespace qs::ops
