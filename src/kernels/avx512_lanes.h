// Lane helpers shared by the AVX-512 kernel files (kernels_avx512.cc, kernels_attn_avx512.cc).
// Internal linkage on purpose, as x86_reduce.h: each file keeps its own copy under its own
// ISA flags.
#pragma once
#include <immintrin.h>

#include <cmath>
#include <cstdint>

namespace strata::kernels::avx512 {
namespace {

inline __mmask16 Mask16(int64_t rem) {  // lanes [0, rem) for 0 <= rem <= 16
  return static_cast<__mmask16>((1u << rem) - 1u);
}

// ref::ExpPoly, 16 lanes.
inline __m512 ExpPoly(__m512 x) {
  const __m512 r = _mm512_set1_ps(0x1.8p23f);
  const __m512 nn = _mm512_sub_ps(_mm512_fmadd_ps(x, _mm512_set1_ps(0x1.715476p+0f), r), r);
  const __m512 b = _mm512_fnmadd_ps(nn, _mm512_set1_ps(0x1.7f7d1cp-20f),
                                    _mm512_fnmadd_ps(nn, _mm512_set1_ps(0x1.62e4p-1f), x));
  const __mmask16 big = _mm512_cmp_ps_mask(_mm512_abs_ps(nn), _mm512_set1_ps(192.0f), _CMP_GT_OQ);
  const __m512 u = _mm512_mul_ps(b, b);
  const __m512 j = _mm512_fmadd_ps(
      _mm512_fmadd_ps(
          _mm512_fmadd_ps(_mm512_set1_ps(0x1.0e4020p-7f), b, _mm512_set1_ps(0x1.573e2ep-5f)), u,
          _mm512_fmadd_ps(_mm512_set1_ps(0x1.555e66p-3f), b, _mm512_set1_ps(0x1.fffdb6p-2f))),
      u, _mm512_fmadd_ps(_mm512_set1_ps(0x1.ffffecp-1f), b, _mm512_set1_ps(1.0f)));
  const __m512 res = _mm512_scalef_ps(j, nn);
  if (big == 0) return res;
  const __m512 sat = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(nn, _mm512_setzero_ps(), _CMP_LE_OQ),
                                          _mm512_set1_ps(INFINITY), _mm512_setzero_ps());
  return _mm512_mask_blend_ps(big, res, sat);
}

// f16 lanes (F16 dot products and the f16 KV cache).
struct LoadF16 {
  static __m512 Load(const void* p, int64_t i) {
    return _mm512_cvtph_ps(
        _mm256_loadu_si256(reinterpret_cast<const __m256i*>(static_cast<const uint16_t*>(p) + i)));
  }
  static __m512 LoadMasked(const void* p, int64_t i, __mmask16 m) {
    return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, static_cast<const uint16_t*>(p) + i));
  }
};

}  // namespace
}  // namespace strata::kernels::avx512
