// Optimised rotary position embedding: one row [..., t, :] at a time, the two halves
// rotated in one vectorised pass, rows split across OpenMP threads. x may be any view
// whose last dim is contiguous (a head slice of a fused qkv projection); the leading
// dims are walked through their strides, so no copy of x is made.
#include <omp.h>

#include "kernels/cpu/cpu_kernels.h"
#include "kernels/elementwise_fns.h"

namespace qs::kernels {

namespace {

constexpr int64_t kParallelGrain = 16384;  // elements below which threads cost more than they save

const char* rope_supports(const ops::OpCall& c) {
  DType t = c.in[0].dtype();
  if (t != DType::f32 && t != DType::f64) return "dtype is not f32/f64";
  if (c.in[0].size(-1) > 1 && c.in[0].stride(-1) != 1) return "the last dim of x is not contiguous";
  return nullptr;
}

// Element offset of row r (a row-major index over every dim but the last) in x.
int64_t row_offset(const Tensor& x, int64_t r) {
  int64_t off = 0;
  for (int64_t d = x.dim() - 2; d >= 0; --d) {
    int64_t n = x.size(d);
    off += (r % n) * x.stride(d);
    r /= n;
  }
  return off;
}

template <class T> void rope_rows(const Tensor& x, const T* cp, const T* sp, T* op) {
  const int64_t n = x.size(-2), d = x.size(-1), h = d / 2;
  const int64_t rows = d == 0 ? 0 : x.numel() / d;
  const T* xp = x.data_ptr<T>();
#pragma omp parallel for if (rows * d > kParallelGrain)
  for (int64_t r = 0; r < rows; ++r) {
    const T* xr = xp + row_offset(x, r);
    const T* cr = cp + (r % n) * h;
    const T* sr = sp + (r % n) * h;
    T* orow = op + r * d;
#pragma omp simd
    for (int64_t j = 0; j < h; ++j) {
      T x1 = xr[j], x2 = xr[j + h];
      orow[j] = x1 * cr[j] - x2 * sr[j];
      orow[j + h] = x1 * sr[j] + x2 * cr[j];
    }
  }
}

void rope_cpu(ops::OpCall& c) {
  Tensor cos = c.in[1].contiguous(), sin = c.in[2].contiguous();
  visit_float(c.in[0].dtype(), "rope", [&]<class T>() {
    rope_rows<T>(c.in[0], cos.data_ptr<T>(), sin.data_ptr<T>(), c.out[0].data_ptr<T>());
  });
}

}  // namespace

void register_rope_cpu(std::vector<ops::OpDef>& t) { ops::add_kernel(t, ops::OpKind::rope, {"cpu", rope_supports, rope_cpu}); }

}  // namespace qs::kernels
