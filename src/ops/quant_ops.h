// Shared pieces of the integer quantisation rows (src/ops/quant_ops.cpp) and their
// harness samples (src/ops/quant_samples.cpp).
#pragma once
#include "ops/op.h"

namespace qs::ops {

int32_t qdtype_min(DType t);  // u8: 0, i8: -128
int32_t qdtype_max(DType t);  // u8: 255, i8: 127
// scale f32 [channels] and zero_point i32 [channels], else an error naming `op`.
void check_qparam_tensors(const char* op, const Tensor& scale, const Tensor& zp, int64_t channels);
// x_scale and the output attributes (out, out_scale, out_zp, out_qmin, out_qmax).
void check_out_attrs(const char* op, const Attrs& a);
DType out_dtype(const Attrs& a);  // f32, u8 or i8 from attr "out"

std::vector<Sample> quantize_samples(DType dt, Generator& g);
std::vector<Sample> dequantize_samples(DType dt, Generator& g);
std::vector<Sample> qlinear_samples(DType dt, Generator& g);
std::vector<Sample> qconv_samples(DType dt, Generator& g);
std::vector<Sample> dynamic_linear_samples(DType dt, Generator& g);
std::vector<Sample> woq_linear_samples(DType dt, Generator& g);

}  // namespace qs::ops
