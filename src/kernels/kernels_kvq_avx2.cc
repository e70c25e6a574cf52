// AVX2 twin of internal::AccumulateKvRow (kv_quant.cc): acc[i] += w * row[i] for a row of a
// KV cache (F16, Q8_0 or Q4_0) or of f32, one fused multiply-add per element as the scalar twin, so
// the results are bit-identical. Rows need not be aligned.
#include <immintrin.h>

#include <cstring>

#include "base/fp16.h"
#include "kernels/kernels_impl.h"

namespace strata::kernels::internal {
namespace {

// acc[0..8) += w8 * x8
inline void Fma8(float* acc, __m256 x, __m256 w) {
  _mm256_storeu_ps(acc, _mm256_fmadd_ps(x, w, _mm256_loadu_ps(acc)));
}

// 8 int8 at p as floats.
inline __m256 I8ToF32(const int8_t* p) {
  int64_t raw;
  std::memcpy(&raw, p, 8);
  return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_cvtsi64_si128(raw)));
}

}  // namespace

void AccumulateKvRowAvx2(DType t, const void* row, float w, float* acc, int64_t n) {
  const auto* p = static_cast<const uint8_t*>(row);
  const __m256 wv = _mm256_set1_ps(w);
  if (t == DType::F32) {
    const auto* x = static_cast<const float*>(row);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) Fma8(acc + i, _mm256_loadu_ps(x + i), wv);
    if (i < n) AccumulateKvRow(t, x + i, w, acc + i, n - i);
    return;
  }
  if (t == DType::F16) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
      Fma8(acc + i, _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 2 * i))),
           wv);
    if (i < n) AccumulateKvRow(t, p + 2 * i, w, acc + i, n - i);
    return;
  }
  for (int64_t b = 0; b < n / 32; ++b) {
    float* ab = acc + b * 32;
    if (t == DType::Q8_0) {
      const uint8_t* blk = p + b * sizeof(BlockQ8_0);
      uint16_t d;
      std::memcpy(&d, blk, 2);
      const __m256 dw = _mm256_set1_ps(fp16_to_f32(d) * w);
      const auto* qs = reinterpret_cast<const int8_t*>(blk + 2);
      for (int c = 0; c < 4; ++c) Fma8(ab + 8 * c, I8ToF32(qs + 8 * c), dw);
    } else {  // Q4_0
      const uint8_t* blk = p + b * sizeof(BlockQ4_0);
      uint16_t d;
      std::memcpy(&d, blk, 2);
      const __m256 dw = _mm256_set1_ps(fp16_to_f32(d) * w);
      const __m128i packed = _mm_loadu_si128(reinterpret_cast<const __m128i*>(blk + 2));
      const __m128i mask = _mm_set1_epi8(15), eight = _mm_set1_epi8(8);
      const __m128i lo = _mm_sub_epi8(_mm_and_si128(packed, mask), eight);
      const __m128i hi = _mm_sub_epi8(_mm_and_si128(_mm_srli_epi16(packed, 4), mask), eight);
      alignas(16) int8_t q[32];
      _mm_store_si128(reinterpret_cast<__m128i*>(q), lo);
      _mm_store_si128(reinterpret_cast<__m128i*>(q + 16), hi);
      for (int c = 0; c < 4; ++c) Fma8(ab + 8 * c, I8ToF32(q + 8 * c), dw);
    }
  }
}

}  // namespace strata::kernels::internal
