// The GCC target attributes of the kernels' AVX-512 builds, in a binary that stays x86-64-v3:
// each runs only where backend::avx512() (and, for VNNI, backend::exact_u8s8()) says so.
//   QS_TARGET_AVX512       f32 loops (attention_cpu_fast.cpp, elementwise_cpu.cpp); GCC is
//                          also asked to vectorise `omp simd` loops 16 lanes wide (its
//                          generic tuning prefers 256-bit vectors); clang (the fuzz preset)
//                          has no such target option and would ignore the whole attribute.
//   QS_TARGET_AVX512_INT   integer and quantisation loops (quant_epilogue_avx512.h)
//   QS_TARGET_AVX512_VNNI  the same with vpdpbusd (quant_woq_q8_cpu.cpp, quant_conv_c1_cpu.cpp)
//   QS_TARGET_AVX512_BF16  f32 loops with vdpbf16ps (conv_c1_cpu.cpp), where backend::native_bf16()
#pragma once

#if defined(__clang__)
#define QS_TARGET_AVX512 __attribute__((target("avx2,fma,avx512f,avx512vl,avx512bw,avx512dq")))
#else
#define QS_TARGET_AVX512 __attribute__((target("avx2,fma,avx512f,avx512vl,avx512bw,avx512dq,prefer-vector-width=512")))
#endif
#define QS_TARGET_AVX512_INT __attribute__((target("avx2,fma,avx512f,avx512bw,avx512vl")))
#define QS_TARGET_AVX512_VNNI __attribute__((target("avx2,fma,avx512f,avx512bw,avx512vl,avx512vnni")))
#define QS_TARGET_AVX512_BF16 __attribute__((target("avx2,fma,avx512f,avx512bw,avx512vl,avx512dq,avx512bf16")))
