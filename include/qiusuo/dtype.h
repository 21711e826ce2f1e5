// Element types of qiusuo tensors, and conversions between their storage forms.
#pragma once
#include <cstddef>
#include <cstdint>
#include <cstring>

namespace qs {

// The storage types a Tensor can hold. b8 is bool (one byte, 0 or 1).
enum class DType : uint8_t { f32, f64, bf16, f16, i8, u8, i32, i64, b8 };
constexpr int kNumDTypes = 9;

size_t dtype_size(DType t);
const char* dtype_name(DType t);  // "f32", "bf16", ...; names follow safetensors' F32/BF16 in io
bool is_floating(DType t);        // f32, f64, bf16, f16
bool is_integral(DType t);        // i8, u8, i32, i64, b8

// bfloat16: the upper 16 bits of an IEEE f32; conversion rounds to nearest even.
struct bf16 {
  uint16_t bits = 0;
};
inline float bf16_to_f32(bf16 v) {
  uint32_t u = uint32_t(v.bits) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
inline bf16 f32_to_bf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return bf16{uint16_t((u >> 16) | 0x40)};  // quiet NaN
  u += 0x7fffu + ((u >> 16) & 1u);
  return bf16{uint16_t(u >> 16)};
}

// IEEE half precision (binary16), storage only; conversion rounds to nearest even.
struct f16 {
  uint16_t bits = 0;
};
float f16_to_f32(f16 v);
f16 f32_to_f16(float f);

// C++ type -> DType.
template <class T> struct dtype_of;
template <> struct dtype_of<float> { static constexpr DType value = DType::f32; };
template <> struct dtype_of<double> { static constexpr DType value = DType::f64; };
template <> struct dtype_of<bf16> { static constexpr DType value = DType::bf16; };
template <> struct dtype_of<f16> { static constexpr DType value = DType::f16; };
template <> struct dtype_of<int8_t> { static constexpr DType value = DType::i8; };
template <> struct dtype_of<uint8_t> { static constexpr DType value = DType::u8; };
template <> struct dtype_of<int32_t> { static constexpr DType value = DType::i32; };
template <> struct dtype_of<int64_t> { static constexpr DType value = DType::i64; };
template <> struct dtype_of<bool> { static constexpr DType value = DType::b8; };

// Reads element i of a buffer of dtype t as double / writes a double into it (with the
// type's rounding and saturation-free truncation, as a C cast does). Used by reference
// kernels and conversions; never on a hot path.
double load_as_double(const void* base, DType t, int64_t i);
void store_from_double(void* base, DType t, int64_t i, double v);

}  // namespace qs
