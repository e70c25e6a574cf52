// Horizontal reductions shared by the x86 kernel files. Internal linkage on purpose: each
// kernel file is compiled with its own ISA flags, so each keeps its own copy (one inline
// function with external linkage would let the linker pick an AVX-512 encoding for the AVX2
// path).
#pragma once
#include <immintrin.h>

namespace strata::kernels::x86 {
namespace {

// Sum of 8 float lanes in the fixed order of the scalar twins' Reduce8: the two 128-bit halves
// added lane by lane, then lanes (0+2, 1+3), then those two.
inline float Reduce8(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_extractf128_ps(v, 1), _mm256_castps256_ps128(v));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

}  // namespace
}  // namespace strata::kernels::x86
