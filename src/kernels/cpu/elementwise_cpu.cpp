// Optimised elementwise kernels: dims coalesced, contiguous and scalar-broadcast inner
// loops vectorised (omp simd, glibc's vector math), rows split across OpenMP threads.
#include <omp.h>

#include <array>
#include <type_traits>

#include "backend/dnnl_util.h"
#include "kernels/cpu/cpu_kernels.h"
#include "kernels/cpu/simd_avx2.h"
#include "kernels/cpu/target_avx512.h"
#include "kernels/elementwise_fns.h"
#include "tensor/strided.h"

namespace qs::kernels {

namespace {

constexpr int64_t kParallelGrain = 16384;  // elements below which threading costs more than it saves

// Output-shaped iteration space with per-operand strides, adjacent dims merged.
template <int N> struct Iter {
  Shape shape;
  std::array<Shape, N> strides;  // element strides; [0] is the output

  Iter(const Tensor& out, std::array<const Tensor*, N - 1> ins) {
    shape = out.shape();
    strides[0] = out.strides();
    for (int k = 1; k < N; ++k) strides[size_t(k)] = broadcast_strides(*ins[size_t(k - 1)], shape);
    coalesce();
  }
  void coalesce() {
    if (shape.empty()) {
      shape = {1};
      for (auto& s : strides) s = {1};
      return;
    }
    Shape ns = {shape.back()};
    std::array<Shape, N> nst;
    for (int k = 0; k < N; ++k) nst[size_t(k)] = {strides[size_t(k)].back()};
    for (int64_t d = int64_t(shape.size()) - 2; d >= 0; --d) {
      bool merge = true;
      for (int k = 0; k < N; ++k)
        merge = merge && strides[size_t(k)][size_t(d)] == nst[size_t(k)].front() * ns.front();
      if (shape[size_t(d)] == 1) continue;
      if (ns.front() == 1) {  // replace a size-1 inner dim
        ns.front() = shape[size_t(d)];
        for (int k = 0; k < N; ++k) nst[size_t(k)].front() = strides[size_t(k)][size_t(d)];
        continue;
      }
      if (merge) {
        ns.front() *= shape[size_t(d)];
      } else {
        ns.insert(ns.begin(), shape[size_t(d)]);
        for (int k = 0; k < N; ++k) nst[size_t(k)].insert(nst[size_t(k)].begin(), strides[size_t(k)][size_t(d)]);
      }
    }
    shape = ns;
    strides = nst;
  }
  int64_t inner() const { return shape.back(); }
  int64_t rows() const { return shape_numel(shape) / std::max<int64_t>(1, inner()); }
  // Element offsets of row r for each operand.
  std::array<int64_t, N> row_offsets(int64_t r) const {
    std::array<int64_t, N> off{};
    for (int64_t d = int64_t(shape.size()) - 2; d >= 0; --d) {
      int64_t i = r % shape[size_t(d)];
      r /= shape[size_t(d)];
      for (int k = 0; k < N; ++k) off[size_t(k)] += i * strides[size_t(k)][size_t(d)];
    }
    return off;
  }
  int64_t inner_stride(int k) const { return strides[size_t(k)].back(); }
};

// Runs row(o, a, ..., n, strides) over all rows, threaded when large. When there is
// a single row it is split into chunks instead.
template <int N, class RowFn> void run_rows(const Iter<N>& it, RowFn row) {
  int64_t rows = it.rows(), inner = it.inner();
  int64_t total = rows * inner;
  if (rows == 1) {
    int64_t chunks = total > kParallelGrain ? std::min<int64_t>(omp_get_max_threads() * 4, total / 4096) : 1;
    chunks = std::max<int64_t>(chunks, 1);
#pragma omp parallel for if (chunks > 1)
    for (int64_t c = 0; c < chunks; ++c) {
      int64_t lo = inner * c / chunks, hi = inner * (c + 1) / chunks;
      std::array<int64_t, N> off{};
      for (int k = 0; k < N; ++k) off[size_t(k)] = lo * it.inner_stride(k);
      row(off, hi - lo);
    }
    return;
  }
#pragma omp parallel for if (total > kParallelGrain)
  for (int64_t r = 0; r < rows; ++r) row(it.row_offsets(r), inner);
}

const char* float_only(const ops::OpCall& c) {
  for (auto& x : c.in)
    if (x.defined() && x.dtype() != DType::f32 && x.dtype() != DType::f64 && x.dtype() != DType::b8)
      return "only f32/f64 tensors";
  return nullptr;
}

// GELU (erf) and SiLU in f32 are straight-line arithmetic (kernels/fast_math.h), the costly
// unary ops of Transformer MLPs: where oneDNN runs AVX-512 their contiguous rows run 16 lanes
// wide (a GCC target attribute; the binary stays x86-64-v3), within the same error of the f64
// formula as the 8-lane rows (FastMath.GeluF32AndItsGradientMatchF64 runs either, by ISA).
// Functions through libm's vector variants stay 8 lanes.
template <class Fn> constexpr bool kWideUnary = std::is_same_v<Fn, gelu_erf_fn> || std::is_same_v<Fn, silu_fn>;
bool wide_unary() {
  static const bool wide = backend::avx512_loops("f32 GELU and SiLU rows");
  return wide;
}
template <class Fn>
QS_TARGET_AVX512 void unary_row_avx512(const float* x, float* y, int64_t n) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) y[i] = Fn::f(x[i]);
}

template <class Fn, class T> void unary_loop(ops::OpCall& c) {
  Iter<2> it(c.out[0], {&c.in[0]});
  T* o = static_cast<T*>(c.out[0].raw_data());
  const T* x = static_cast<const T*>(c.in[0].raw_data());
  int64_t sx = it.inner_stride(1);
  bool wide = false;
  if constexpr (std::is_same_v<T, float> && kWideUnary<Fn>) wide = wide_unary();
  run_rows(it, [&](std::array<int64_t, 2> off, int64_t n) {
    T* op = o + off[0];
    const T* xp = x + off[1];
    if constexpr (std::is_same_v<T, float> && kWideUnary<Fn>)
      if (sx == 1 && wide) return unary_row_avx512<Fn>(xp, op, n);
    if (sx == 1) {
#pragma omp simd
      for (int64_t i = 0; i < n; ++i) op[i] = Fn::f(xp[i]);
    } else {
      for (int64_t i = 0; i < n; ++i) op[i] = Fn::f(xp[i * sx]);
    }
  });
}

template <class Fn> void unary_cpu(ops::OpCall& c) {
  visit_float(c.in[0].dtype(), "unary", [&]<class T>() { unary_loop<Fn, T>(c); });
}
void gelu_cpu(ops::OpCall& c) {
  if (c.attrs.s("approximate") == "tanh")
    unary_cpu<gelu_tanh_fn>(c);
  else
    unary_cpu<gelu_erf_fn>(c);
}

template <class Fn, class T, class R> void binary_loop(ops::OpCall& c) {
  Iter<3> it(c.out[0], {&c.in[0], &c.in[1]});
  R* o = static_cast<R*>(c.out[0].raw_data());
  const T* a = static_cast<const T*>(c.in[0].raw_data());
  const T* b = static_cast<const T*>(c.in[1].raw_data());
  int64_t sa = it.inner_stride(1), sb = it.inner_stride(2);
  run_rows(it, [&](std::array<int64_t, 3> off, int64_t n) {
    R* op = o + off[0];
    const T* ap = a + off[1];
    const T* bp = b + off[2];
    if (sa == 1 && sb == 1) {
#pragma omp simd
      for (int64_t i = 0; i < n; ++i) op[i] = R(Fn::f(ap[i], bp[i]));
    } else if (sa == 1 && sb == 0) {
      T bv = bp[0];
#pragma omp simd
      for (int64_t i = 0; i < n; ++i) op[i] = R(Fn::f(ap[i], bv));
    } else if (sa == 0 && sb == 1) {
      T av = ap[0];
#pragma omp simd
      for (int64_t i = 0; i < n; ++i) op[i] = R(Fn::f(av, bp[i]));
    } else {
      for (int64_t i = 0; i < n; ++i) op[i] = R(Fn::f(ap[i * sa], bp[i * sb]));
    }
  });
}

template <class Fn> void binary_cpu(ops::OpCall& c) {
  visit_float(c.in[0].dtype(), "binary", [&]<class T>() { binary_loop<Fn, T, T>(c); });
}
template <class Fn> void compare_cpu(ops::OpCall& c) {
  visit_float(c.in[0].dtype(), "compare", [&]<class T>() { binary_loop<Fn, T, uint8_t>(c); });
}

void where_cpu(ops::OpCall& c) {
  visit_float(c.in[1].dtype(), "where", [&]<class T>() {
    Iter<4> it(c.out[0], {&c.in[0], &c.in[1], &c.in[2]});
    T* o = static_cast<T*>(c.out[0].raw_data());
    const uint8_t* m = static_cast<const uint8_t*>(c.in[0].raw_data());
    const T* a = static_cast<const T*>(c.in[1].raw_data());
    const T* b = static_cast<const T*>(c.in[2].raw_data());
    int64_t sm = it.inner_stride(1), sa = it.inner_stride(2), sb = it.inner_stride(3);
    run_rows(it, [&](std::array<int64_t, 4> off, int64_t n) {
      for (int64_t i = 0; i < n; ++i) o[off[0] + i] = m[off[1] + i * sm] ? a[off[2] + i * sa] : b[off[3] + i * sb];
    });
  });
}

void clamp_cpu(ops::OpCall& c) {
  visit_float(c.in[0].dtype(), "clamp", [&]<class T>() {
    Iter<2> it(c.out[0], {&c.in[0]});
    T lo = c.attrs.has("min") ? T(c.attrs.f("min")) : -std::numeric_limits<T>::infinity();
    T hi = c.attrs.has("max") ? T(c.attrs.f("max")) : std::numeric_limits<T>::infinity();
    T* o = static_cast<T*>(c.out[0].raw_data());
    const T* x = static_cast<const T*>(c.in[0].raw_data());
    int64_t sx = it.inner_stride(1);
    run_rows(it, [&](std::array<int64_t, 2> off, int64_t n) {
      for (int64_t i = 0; i < n; ++i) {
        T v = x[off[1] + i * sx];
        v = v < lo ? lo : v;  // NaN passes through, as in torch.clamp
        o[off[0] + i] = v > hi ? hi : v;
      }
    });
  });
}

// Copy and cast between f32, f64 and bf16 (the autocast path).
const char* copy_supports(const ops::OpCall& c) {
  auto ok = [](DType t) { return t == DType::f32 || t == DType::f64 || t == DType::bf16 || t == DType::f16; };
  if (!ok(c.in[0].dtype()) || !ok(c.out[0].dtype())) return "only f32/f64/bf16/f16 copies and casts";
  return nullptr;
}
// Half-precision values go through f32, narrowing from f32 (as the reference's store does).
template <class S, class D> D convert(S v) {
  if constexpr (std::is_same_v<S, D>) {
    return v;
  } else if constexpr (std::is_same_v<S, bf16>) {
    return convert<float, D>(bf16_to_f32(v));
  } else if constexpr (std::is_same_v<S, f16>) {
    return convert<float, D>(f16_to_f32(v));
  } else if constexpr (std::is_same_v<D, bf16>) {
    return f32_to_bf16(float(v));
  } else if constexpr (std::is_same_v<D, f16>) {
    return f32_to_f16(float(v));
  } else {
    return D(v);
  }
}
template <class S, class D> void copy_loop(ops::OpCall& c) {
  Iter<2> it(c.out[0], {&c.in[0]});
  D* o = static_cast<D*>(c.out[0].raw_data());
  const S* x = static_cast<const S*>(c.in[0].raw_data());
  int64_t sx = it.inner_stride(1);
  run_rows(it, [&](std::array<int64_t, 2> off, int64_t n) {
    D* op = o + off[0];
    const S* xp = x + off[1];
    if constexpr (std::is_same_v<S, bf16> && std::is_same_v<D, float>) {
      if (sx == 1) return widen_bf16(xp, op, n);
    } else if constexpr (std::is_same_v<S, float> && std::is_same_v<D, bf16>) {
      if (sx == 1) return narrow_bf16(xp, op, n);
    } else if constexpr (std::is_same_v<S, f16> && std::is_same_v<D, float>) {
      if (sx == 1) return widen_f16(xp, op, n);
    } else if constexpr (std::is_same_v<S, float> && std::is_same_v<D, f16>) {
      if (sx == 1) return narrow_f16(xp, op, n);
    }
    if (sx == 1) {
#pragma omp simd
      for (int64_t i = 0; i < n; ++i) op[i] = convert<S, D>(xp[i]);
    } else {
      for (int64_t i = 0; i < n; ++i) op[i] = convert<S, D>(xp[i * sx]);
    }
  });
}
template <class S> void copy_from(ops::OpCall& c) {
  switch (c.out[0].dtype()) {
    case DType::f32: copy_loop<S, float>(c); break;
    case DType::f64: copy_loop<S, double>(c); break;
    case DType::f16: copy_loop<S, f16>(c); break;
    default: copy_loop<S, bf16>(c); break;
  }
}
void copy_cpu(ops::OpCall& c) {
  switch (c.in[0].dtype()) {
    case DType::f32: copy_from<float>(c); break;
    case DType::f64: copy_from<double>(c); break;
    case DType::f16: copy_from<f16>(c); break;
    default: copy_from<bf16>(c); break;
  }
}

}  // namespace

void register_elementwise_cpu(ops::KernelTable& t) {
  using ops::OpKind;
#define QS_REG_UNARY(name) ops::add_kernel(t, OpKind::name, {"cpu", float_only, unary_cpu<name##_fn>});
  QS_REG_UNARY(neg) QS_REG_UNARY(exp) QS_REG_UNARY(log) QS_REG_UNARY(sqrt) QS_REG_UNARY(rsqrt) QS_REG_UNARY(abs)
  QS_REG_UNARY(relu) QS_REG_UNARY(sigmoid) QS_REG_UNARY(tanh) QS_REG_UNARY(silu) QS_REG_UNARY(sin) QS_REG_UNARY(cos)
#undef QS_REG_UNARY
  ops::add_kernel(t, OpKind::gelu, {"cpu", float_only, gelu_cpu});
#define QS_REG_BINARY(name) ops::add_kernel(t, OpKind::name, {"cpu", float_only, binary_cpu<name##_fn>});
  QS_REG_BINARY(add) QS_REG_BINARY(sub) QS_REG_BINARY(mul) QS_REG_BINARY(div) QS_REG_BINARY(pow)
  QS_REG_BINARY(maximum) QS_REG_BINARY(minimum)
#undef QS_REG_BINARY
#define QS_REG_CMP(name) ops::add_kernel(t, OpKind::name, {"cpu", float_only, compare_cpu<name##_fn>});
  QS_REG_CMP(eq) QS_REG_CMP(ne) QS_REG_CMP(lt) QS_REG_CMP(le) QS_REG_CMP(gt) QS_REG_CMP(ge)
#undef QS_REG_CMP
  ops::add_kernel(t, OpKind::where, {"cpu", float_only, where_cpu});
  ops::add_kernel(t, OpKind::clamp, {"cpu", float_only, clamp_cpu});
  ops::add_kernel(t, OpKind::copy, {"cpu", copy_supports, copy_cpu});
  ops::add_kernel(t, OpKind::cast, {"cpu", copy_supports, copy_cpu});
}

}  // namespace qs::kernels
