// Quantisation parameters: how real values map to small integers.
//
//   q = clamp(round_half_even(x * (1 / scale)) + zero_point, qmin, qmax)     (quantise)
//   x' = (q - zero_point) * scale                                            (dequantise)
//
// with 1/scale computed once in f32 (as PyTorch's fake_quantize and fbgemm do), so every
// kernel (reference or optimised) produces the same integers: see src/kernels/quant_math.h,
// the one helper all of them use.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace qs::quant {

// s8: [-128, 127]; u8: [0, 255]; s4: [-8, 7], two per byte (element 2i in the low nibble
// of byte i, 2i+1 in the high nibble), for weight-only INT4.
enum class QDtype : uint8_t { s8, u8, s4 };
std::string qdtype_name(QDtype d);      // "s8" | "u8" | "s4"
QDtype parse_qdtype(const std::string&);  // errors on anything else

struct QParams {
  QDtype dtype = QDtype::s8;
  // -1: per tensor (scale and zero_point hold one value). >= 0: per channel along this
  // axis (one value per channel). With group_size > 0, per group: groups of group_size
  // consecutive elements along the LAST axis of each channel (axis must be 0 for a 2-D
  // weight [N, K]; scale holds N * K / group_size values, row-major [N, K / group_size]).
  int64_t axis = -1;
  int64_t group_size = 0;
  std::vector<float> scale;         // > 0 and finite
  std::vector<int32_t> zero_point;  // in [qmin, qmax]; 0 for symmetric
  // Optional narrower range (e.g. 7-bit activations [0, 127] on CPUs without VNNI, as
  // PyTorch's reduce_range): when quant_min < quant_max they replace the dtype's range.
  int32_t quant_min = 0, quant_max = 0;

  int32_t qmin() const;  // quant_min if set, else the dtype's minimum
  int32_t qmax() const;
  bool per_tensor() const { return axis < 0; }
  bool symmetric() const;  // every zero point is 0 (s8/s4) or 128 (u8 symmetric)
  // Errors (qs::Error, naming the field): empty or mismatched scale/zero_point, a scale
  // that is not finite and positive, a zero point outside [qmin, qmax], a group size
  // that does not divide the channel length.
  void validate() const;
};

}  // namespace qs::quant
