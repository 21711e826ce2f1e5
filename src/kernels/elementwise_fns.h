// The formulas of the elementwise primitives, written once. The reference kernels
// evaluate them in double; the optimised kernels in the tensor's own type. Each unary
// functor has f(x) and its derivative df(x, y) given the input x and output y.
#pragma once
#include <cmath>

#include "kernels/fast_math.h"
#include "kernels/kernel.h"

namespace qs::kernels {

#define QS_UNARY_FN(NAME, F, DF)                          \
  struct NAME##_fn {                                      \
    template <class T> static T f(T x) { return F; }      \
    template <class T> static T df(T x, T y) { return DF; } \
  };

constexpr double kSqrt1_2 = 0.70710678118654752440;
constexpr double kInvSqrt2Pi = 0.39894228040143267794;
constexpr double kSqrt2OverPi = 0.79788456080286535588;

QS_UNARY_FN(neg, -x, T(-1))
QS_UNARY_FN(exp, std::exp(x), y)
QS_UNARY_FN(log, std::log(x), T(1) / x)
QS_UNARY_FN(sqrt, std::sqrt(x), T(0.5) / y)
QS_UNARY_FN(rsqrt, T(1) / std::sqrt(x), T(-0.5) * y * y * y)
QS_UNARY_FN(abs, std::abs(x), x > T(0) ? T(1) : (x < T(0) ? T(-1) : T(0)))
QS_UNARY_FN(relu, x > T(0) ? x : T(0), y > T(0) ? T(1) : T(0))  // backward sees only y
QS_UNARY_FN(sigmoid, T(1) / (T(1) + std::exp(-x)), y * (T(1) - y))
QS_UNARY_FN(tanh, std::tanh(x), T(1) - y * y)
// silu: f32 through fast_exp (vectorised: libm's scalar exp made it the costliest op of a
// SwiGLU decoding step after the products), f64 through libm.
QS_UNARY_FN(silu, x / (T(1) + fast_exp(-x)),
            (T(1) / (T(1) + fast_exp(-x))) * (T(1) + x * (T(1) - T(1) / (T(1) + fast_exp(-x)))))
QS_UNARY_FN(sin, std::sin(x), std::cos(x))
QS_UNARY_FN(cos, std::cos(x), -std::sin(x))
// gelu, exact: x * Phi(x) = 0.5 x (1 + erf(x / sqrt 2))  (Hendrycks & Gimpel 2016)
// f32 uses the vectorisable fast_erf / fast_exp (kernels/fast_math.h); f64 uses libm.
QS_UNARY_FN(gelu_erf, T(0.5) * x * (T(1) + fast_erf(x * T(kSqrt1_2))),
            T(0.5) * (T(1) + fast_erf(x * T(kSqrt1_2))) + x * T(kInvSqrt2Pi) * fast_exp(T(-0.5) * x * x))
// gelu, tanh approximation: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
struct gelu_tanh_fn {
  template <class T> static T f(T x) {
    return T(0.5) * x * (T(1) + std::tanh(T(kSqrt2OverPi) * (x + T(0.044715) * x * x * x)));
  }
  template <class T> static T df(T x, T) {
    T u = T(kSqrt2OverPi) * (x + T(0.044715) * x * x * x);
    T t = std::tanh(u);
    T du = T(kSqrt2OverPi) * (T(1) + T(3 * 0.044715) * x * x);
    return T(0.5) * (T(1) + t) + T(0.5) * x * (T(1) - t * t) * du;
  }
};
#undef QS_UNARY_FN

// Binary formulas.
struct add_fn { template <class T> static T f(T a, T b) { return a + b; } };
struct sub_fn { template <class T> static T f(T a, T b) { return a - b; } };
struct mul_fn { template <class T> static T f(T a, T b) { return a * b; } };
struct div_fn { template <class T> static T f(T a, T b) { return a / b; } };
struct pow_fn { template <class T> static T f(T a, T b) { return std::pow(a, b); } };
// NaN-propagating, as torch.maximum / torch.minimum.
struct maximum_fn { template <class T> static T f(T a, T b) { return (a != a || b != b) ? a + b : (a > b ? a : b); } };
struct minimum_fn { template <class T> static T f(T a, T b) { return (a != a || b != b) ? a + b : (a < b ? a : b); } };
struct eq_fn { template <class T> static bool f(T a, T b) { return a == b; } };
struct ne_fn { template <class T> static bool f(T a, T b) { return a != b; } };
struct lt_fn { template <class T> static bool f(T a, T b) { return a < b; } };
struct le_fn { template <class T> static bool f(T a, T b) { return a <= b; } };
struct gt_fn { template <class T> static bool f(T a, T b) { return a > b; } };
struct ge_fn { template <class T> static bool f(T a, T b) { return a >= b; } };

// Calls fn.template operator()<T>() for the float type T of dtype t.
template <class F> decltype(auto) visit_float(DType t, const char* op, F&& fn) {
  if (t == DType::f32) return fn.template operator()<float>();
  if (t == DType::f64) return fn.template operator()<double>();
  throw Error(fmt::format("{}: dtype {} is not supported here (f32 or f64 expected)", op, dtype_name(t)));
}

}  // namespace qs::kernels
