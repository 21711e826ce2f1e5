// The GCC target attribute of the AVX-512 builds of f32 loops (attention_cpu_fast.cpp,
// elementwise_cpu.cpp): AVX-512 code in a binary that stays x86-64-v3, run only where
// backend::avx512(). GCC is also asked to vectorise `omp simd` loops 16 lanes wide (its
// generic tuning prefers 256-bit vectors); clang (the fuzz preset) has no such target option
// and would ignore the whole attribute for it.
#pragma once

#if defined(__clang__)
#define QS_TARGET_AVX512 __attribute__((target("avx2,fma,avx512f,avx512vl,avx512bw,avx512dq")))
#else
#define QS_TARGET_AVX512 __attribute__((target("avx2,fma,avx512f,avx512vl,avx512bw,avx512dq,prefer-vector-width=512")))
#endif
