// AVX-512 (F/BW/VL/DQ/VNNI) kernels. Compiled with the AVX-512 flags and -ffp-contract=off;
// only reached after the dispatcher has checked the CPU.
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <iterator>
#include <limits>

#include "base/fp16.h"
#include "kernels/avx512_lanes.h"
#include "kernels/kernels.h"
#include "kernels/kernels_impl.h"
#include "kernels/x86_reduce.h"

namespace strata::kernels {
namespace avx512 {
namespace {

using internal::TypeKernels;

constexpr int kQK = 32;

// e^x to within a few ulp (same construction as the AVX2 path): x = n*ln2 + r,
// degree-7 Taylor polynomial for e^r, 2^n applied as two factors.
inline __m512 Exp(__m512 x) {
  x = _mm512_max_ps(_mm512_set1_ps(-104.0f), x);  // constant first: NaN propagates
  x = _mm512_min_ps(_mm512_set1_ps(89.0f), x);
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693145751953125f), x);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(1.428606765330187e-6f), r);
  __m512 p = _mm512_set1_ps(1.0f / 5040.0f);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 720.0f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 120.0f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 24.0f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 6.0f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
  const __m512i ni = _mm512_cvtps_epi32(n);
  const __m512i n1 = _mm512_srai_epi32(ni, 1);
  const __m512i n2 = _mm512_sub_epi32(ni, n1);
  const __m512i bias = _mm512_set1_epi32(127);
  const __m512 s1 = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_add_epi32(n1, bias), 23));
  const __m512 s2 = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_add_epi32(n2, bias), 23));
  return _mm512_mul_ps(_mm512_mul_ps(p, s1), s2);
}

// ---- activation converters --------------------------------------------------------------

void QuantizeF16(const float* x, void* dst, int64_t n) {
  uint16_t* y = static_cast<uint16_t*>(dst);
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m256i h = _mm512_cvtps_ph(_mm512_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(y + i), h);
  }
  if (i < n) {
    const __mmask16 m = Mask16(n - i);
    const __m256i h = _mm512_cvtps_ph(_mm512_maskz_loadu_ps(m, x + i), _MM_FROUND_TO_NEAREST_INT);
    _mm256_mask_storeu_epi16(y + i, m, h);
  }
}

inline __m256i Bf16From(__m512i u) {
  const __m512i hi = _mm512_srli_epi32(u, 16);
  const __mmask16 is_nan = _mm512_cmpgt_epu32_mask(
      _mm512_and_si512(u, _mm512_set1_epi32(0x7fffffff)), _mm512_set1_epi32(0x7f800000));
  const __m512i bias =
      _mm512_add_epi32(_mm512_set1_epi32(0x7fff), _mm512_and_si512(hi, _mm512_set1_epi32(1)));
  __m512i r = _mm512_srli_epi32(_mm512_add_epi32(u, bias), 16);
  r = _mm512_mask_or_epi32(r, is_nan, hi, _mm512_set1_epi32(64));
  return _mm512_cvtepi32_epi16(r);
}

void QuantizeBF16(const float* x, void* dst, int64_t n) {
  uint16_t* y = static_cast<uint16_t*>(dst);
  int64_t i = 0;
  for (; i + 16 <= n; i += 16)
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(y + i), Bf16From(_mm512_loadu_si512(x + i)));
  if (i < n) {
    const __mmask16 m = Mask16(n - i);
    _mm256_mask_storeu_epi16(y + i, m, Bf16From(_mm512_maskz_loadu_epi32(m, x + i)));
  }
}

void QuantizeQ8_0(const float* x, void* dst, int64_t n) {
  auto* out = static_cast<uint8_t*>(dst);  // blocks need not be aligned (KV rows)
  for (int64_t b = 0; b < n / kQK; ++b) {
    const float* xb = x + b * kQK;
    BlockQ8_0 blk;
    const __m512 v0 = _mm512_loadu_ps(xb);
    const __m512 v1 = _mm512_loadu_ps(xb + 16);
    const float amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(v0), _mm512_abs_ps(v1)));
    const float d = amax / 127.0f;
    const float id = amax != 0.0f ? 127.0f / amax : 0.0f;
    blk.d = f32_to_fp16(d);
    const __m512 mul = _mm512_set1_ps(id);
    const __m512i q0 = _mm512_cvt_roundps_epi32(_mm512_mul_ps(v0, mul),
                                                _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    const __m512i q1 = _mm512_cvt_roundps_epi32(_mm512_mul_ps(v1, mul),
                                                _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(blk.qs), _mm512_cvtsepi32_epi8(q0));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(blk.qs + 16), _mm512_cvtsepi32_epi8(q1));
    std::memcpy(out + b * sizeof(blk), &blk, sizeof(blk));
  }
}

// Q8_K activations (K-quant types), bit-identical to the scalar QuantizeQ8_K: per 256 values
// the first value of largest magnitude, iscale = -127 / it, q = min(127, round-half-even(iscale
// * x)), the 16-element sums and d = 1 / iscale.
void QuantizeQ8K(const float* x, void* dst, int64_t n) {
  BlockQ8_K* y = static_cast<BlockQ8_K*>(dst);
  const __m512i ones8 = _mm512_set1_epi8(1), ones16 = _mm512_set1_epi16(1);
  // Group 4m + L sits in lane 4L + m of the reduced sums (see below).
  const __m512i group_lane =
      _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
  for (int64_t b = 0; b < n / kQK_K; ++b, x += kQK_K) {
    __m512 v[16];
    __m512 amax = _mm512_setzero_ps();
    for (int j = 0; j < 16; ++j) {
      v[j] = _mm512_loadu_ps(x + 16 * j);
      amax = _mm512_max_ps(amax, _mm512_abs_ps(v[j]));
    }
    const float am = _mm512_reduce_max_ps(amax);
    BlockQ8_K& blk = y[b];
    if (am == 0.0f) {
      std::memset(&blk, 0, sizeof(blk));
      continue;
    }
    float max = 0.0f;
    for (int j = 0; j < 16; ++j) {
      const __mmask16 hit = _mm512_cmp_ps_mask(_mm512_abs_ps(v[j]), _mm512_set1_ps(am), _CMP_EQ_OQ);
      if (hit != 0) {
        max = x[16 * j + __builtin_ctz(hit)];
        break;
      }
    }
    const float iscale = -127.0f / max;
    const __m512 is = _mm512_set1_ps(iscale);
    for (int j = 0; j < 16; ++j) {
      const __m512i q =
          _mm512_min_epi32(_mm512_cvt_roundps_epi32(_mm512_mul_ps(is, v[j]),
                                                    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC),
                           _mm512_set1_epi32(127));
      _mm_storeu_si128(reinterpret_cast<__m128i*>(blk.qs + 16 * j), _mm512_cvtsepi32_epi8(q));
    }
    // Sums of 16: four-byte sums (lane e of 128-bit lane L of part k = bytes 64k + 16L + 4e..),
    // then twice pack to 16 bits + add pairs: lane (L, m) = group 4m + L.
    __m512i s4[4];
    for (int k = 0; k < 4; ++k)
      s4[k] =
          _mm512_dpbusd_epi32(_mm512_setzero_si512(), ones8, _mm512_loadu_si512(blk.qs + 64 * k));
    const __m512i s8a = _mm512_madd_epi16(_mm512_packs_epi32(s4[0], s4[1]), ones16);
    const __m512i s8b = _mm512_madd_epi16(_mm512_packs_epi32(s4[2], s4[3]), ones16);
    const __m512i s16 = _mm512_madd_epi16(_mm512_packs_epi32(s8a, s8b), ones16);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(blk.bsums),
                        _mm512_cvtepi32_epi16(_mm512_permutexvar_epi32(group_lane, s16)));
    blk.d = 1.0f / iscale;
  }
}

// ---- dot products ------------------------------------------------------------------------

struct LoadF32 {
  static __m512 Load(const void* p, int64_t i) {
    return _mm512_loadu_ps(static_cast<const float*>(p) + i);
  }
  static __m512 LoadMasked(const void* p, int64_t i, __mmask16 m) {
    return _mm512_maskz_loadu_ps(m, static_cast<const float*>(p) + i);
  }
};

struct LoadBF16 {
  static __m512 Widen(__m256i h) {
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
  }
  static __m512 Load(const void* p, int64_t i) {
    return Widen(
        _mm256_loadu_si256(reinterpret_cast<const __m256i*>(static_cast<const uint16_t*>(p) + i)));
  }
  static __m512 LoadMasked(const void* p, int64_t i, __mmask16 m) {
    return Widen(_mm256_maskz_loadu_epi16(m, static_cast<const uint16_t*>(p) + i));
  }
};

// The accumulation orders are llama.cpp's (see kernels_ref.cc): one 16-lane accumulator per
// (row, token) for F32/F16/BF16, reduced by _mm512_reduce_add_ps's halving tree; 8 lanes per
// block for Q8_0, reduced by Reduce8.

// out[t] = dot(w, x + t*xs) for t < NX, F32/F16 weights: fma over 16-element chunks.
template <class L, int NX>
void DotFloat(int64_t n, const void* w, const uint8_t* x, size_t xs, float* out) {
  __m512 acc[NX];
#pragma GCC unroll 4
  for (int t = 0; t < NX; ++t) acc[t] = _mm512_setzero_ps();
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m512 wv = L::Load(w, i);
#pragma GCC unroll 4
    for (int t = 0; t < NX; ++t) acc[t] = _mm512_fmadd_ps(wv, L::Load(x + t * xs, i), acc[t]);
  }
  if (i < n) {
    const __mmask16 m = Mask16(n - i);
    const __m512 wv = L::LoadMasked(w, i, m);
#pragma GCC unroll 4
    for (int t = 0; t < NX; ++t)
      acc[t] = _mm512_fmadd_ps(wv, L::LoadMasked(x + t * xs, i, m), acc[t]);
  }
#pragma GCC unroll 4
  for (int t = 0; t < NX; ++t) out[t] = _mm512_reduce_add_ps(acc[t]);
}

// BF16 weights: vdpbf16ps over 32-element chunks (odd product first, then even, per lane).
struct DotBF16Pairs {
  static __m512bh Load(const void* p, int64_t i, int64_t n) {
    const uint16_t* q = static_cast<const uint16_t*>(p) + i;
    const int64_t rem = n - i;
    const __mmask32 m = rem >= 32 ? 0xFFFFFFFFu : ((1u << rem) - 1u);
    return reinterpret_cast<__m512bh>(_mm512_maskz_loadu_epi16(m, q));
  }
};

template <int NX>
void DotBF16(int64_t n, const void* w, const uint8_t* x, size_t xs, float* out) {
  __m512 acc[NX];
#pragma GCC unroll 4
  for (int t = 0; t < NX; ++t) acc[t] = _mm512_setzero_ps();
  for (int64_t i = 0; i < n; i += 32) {
    const __m512bh wv = DotBF16Pairs::Load(w, i, n);
#pragma GCC unroll 4
    for (int t = 0; t < NX; ++t)
      acc[t] = _mm512_dpbf16_ps(acc[t], wv, DotBF16Pairs::Load(x + t * xs, i, n));
  }
#pragma GCC unroll 4
  for (int t = 0; t < NX; ++t) out[t] = _mm512_reduce_add_ps(acc[t]);
}

// Single-token orders (see kernels_ref.cc): four 16-lane accumulators over 64-element steps,
// folded (0+2)+(1+3) and reduced; F32 leftovers fused into the float sum, F16 in double.
template <class L>
inline __m512 Fold4x16(int64_t np, const void* w, const void* x) {
  __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
  for (int64_t i = 0; i < np; i += 64) {
    a0 = _mm512_fmadd_ps(L::Load(w, i), L::Load(x, i), a0);
    a1 = _mm512_fmadd_ps(L::Load(w, i + 16), L::Load(x, i + 16), a1);
    a2 = _mm512_fmadd_ps(L::Load(w, i + 32), L::Load(x, i + 32), a2);
    a3 = _mm512_fmadd_ps(L::Load(w, i + 48), L::Load(x, i + 48), a3);
  }
  return _mm512_add_ps(_mm512_add_ps(a0, a2), _mm512_add_ps(a1, a3));
}

float DotF32Vec(int64_t n, const void* w, const void* x) {
  const int64_t np = n & ~int64_t{63};
  float sum = _mm512_reduce_add_ps(Fold4x16<LoadF32>(np, w, x));
  const float* a = static_cast<const float*>(w);
  const float* b = static_cast<const float*>(x);
  for (int64_t i = np; i < n; ++i) sum = std::fma(a[i], b[i], sum);
  return sum;
}

float DotF16Vec(int64_t n, const void* w, const void* x) {
  const int64_t np = n & ~int64_t{63};
  double sum = _mm512_reduce_add_ps(Fold4x16<LoadF16>(np, w, x));
  const uint16_t* a = static_cast<const uint16_t*>(w);
  const uint16_t* b = static_cast<const uint16_t*>(x);
  for (int64_t i = np; i < n; ++i)
    sum += static_cast<double>(fp16_to_f32(a[i]) * fp16_to_f32(b[i]));
  return static_cast<float>(sum);
}

float DotBF16Vec(int64_t n, const void* w, const void* x) {
  const uint16_t* a = static_cast<const uint16_t*>(w);
  const uint16_t* b = static_cast<const uint16_t*>(x);
  __m512 c1 = _mm512_setzero_ps(), c2 = c1;
  int64_t i = 0;
  for (; i + 64 <= n; i += 64) {
    c1 = _mm512_dpbf16_ps(c1, reinterpret_cast<__m512bh>(_mm512_loadu_si512(a + i)),
                          reinterpret_cast<__m512bh>(_mm512_loadu_si512(b + i)));
    c2 = _mm512_dpbf16_ps(c2, reinterpret_cast<__m512bh>(_mm512_loadu_si512(a + i + 32)),
                          reinterpret_cast<__m512bh>(_mm512_loadu_si512(b + i + 32)));
  }
  double sum = _mm512_reduce_add_ps(c1);
  sum += _mm512_reduce_add_ps(c2);
  for (; i < n; ++i) sum += static_cast<double>(bf16_to_f32(a[i]) * bf16_to_f32(b[i]));
  return static_cast<float>(sum);
}

using x86::Reduce8;

// Q8_0 x Q8_0 for NR weight rows x NX tokens: per block, |w| (unsigned) . (x with w's sign) via
// VNNI vpdpbusd gives 8 exact int32 lanes of 4 products each; each (row, token) accumulator
// takes fma(dw*dx, lanes).
struct Q8Dot {
  template <int NR, int NX>
  static void Run(int64_t n, const uint8_t* w, size_t ws, const uint8_t* x, size_t xs, float* out) {
    const int64_t nb = n / kQK;
    if constexpr (NR == 2) {
      RunPair<NX>(nb, w, ws, x, xs, out);
      return;
    }
    if constexpr (NR == 4) {
      RunQuad<NX>(nb, w, ws, x, xs, out);
      return;
    }
    const __m256i zero = _mm256_setzero_si256();
    __m256 acc[NR][NX];
#pragma GCC unroll 4
    for (int r = 0; r < NR; ++r)
#pragma GCC unroll 4
      for (int t = 0; t < NX; ++t) acc[r][t] = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; ++b) {
      __m256i xv[NX];
      float dx[NX];
#pragma GCC unroll 4
      for (int t = 0; t < NX; ++t) {
        const BlockQ8_0* xb = reinterpret_cast<const BlockQ8_0*>(x + t * xs) + b;
        xv[t] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xb->qs));
        dx[t] = _cvtsh_ss(xb->d);
      }
#pragma GCC unroll 4
      for (int r = 0; r < NR; ++r) {
        const BlockQ8_0* wb = reinterpret_cast<const BlockQ8_0*>(w + r * ws) + b;
        const __m256i wv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(wb->qs));
        const __m256i aw = _mm256_sign_epi8(wv, wv);
        const float dw = _cvtsh_ss(wb->d);
#pragma GCC unroll 4
        for (int t = 0; t < NX; ++t) {
          const __m256i s = _mm256_dpbusd_epi32(zero, aw, _mm256_sign_epi8(xv[t], wv));
          acc[r][t] = _mm256_fmadd_ps(_mm256_set1_ps(dw * dx[t]), _mm256_cvtepi32_ps(s), acc[r][t]);
        }
      }
    }
#pragma GCC unroll 4
    for (int r = 0; r < NR; ++r)
#pragma GCC unroll 4
      for (int t = 0; t < NX; ++t) out[t * NR + r] = Reduce8(acc[r][t]);
  }

  // Two weight rows at once, one per 256-bit half of a 512-bit register, so every (row,
  // token) keeps its own 8 lanes and the same per-block order. The integer lanes use the
  // offset form: (x + 128) . w - 128 . sum(w) = x . w exactly, which needs no per-pair sign
  // fix-up (the correction depends on the weights only and is shared by all tokens).
  template <int NX>
  static void RunQuad(int64_t nb, const uint8_t* w, size_t ws, const uint8_t* x, size_t xs,
                      float* out);

  template <int NX>
  static void RunPair(int64_t nb, const uint8_t* w, size_t ws, const uint8_t* x, size_t xs,
                      float* out) {
    const __m512i zero = _mm512_setzero_si512();
    const __m512i k128 = _mm512_set1_epi8(static_cast<char>(0x80));
    const __m256i flip = _mm256_set1_epi8(static_cast<char>(0x80));
    __m512 acc[NX];
#pragma GCC unroll 4
    for (int t = 0; t < NX; ++t) acc[t] = _mm512_setzero_ps();
    const BlockQ8_0* w0 = reinterpret_cast<const BlockQ8_0*>(w);
    const BlockQ8_0* w1 = reinterpret_cast<const BlockQ8_0*>(w + ws);
    for (int64_t b = 0; b < nb; ++b) {
      const __m512i wv = _mm512_inserti64x4(
          _mm512_castsi256_si512(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(w0[b].qs))),
          _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w1[b].qs)), 1);
      const __m512i neg_corr = _mm512_sub_epi32(zero, _mm512_dpbusd_epi32(zero, k128, wv));
      const __m512 dw = _mm512_insertf32x8(_mm512_set1_ps(_cvtsh_ss(w0[b].d)),
                                           _mm256_set1_ps(_cvtsh_ss(w1[b].d)), 1);
#pragma GCC unroll 4
      for (int t = 0; t < NX; ++t) {
        const BlockQ8_0* xb = reinterpret_cast<const BlockQ8_0*>(x + t * xs) + b;
        const __m256i xu =
            _mm256_xor_si256(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(xb->qs)), flip);
        const __m512i s = _mm512_dpbusd_epi32(neg_corr, _mm512_broadcast_i64x4(xu), wv);
        const __m512 d = _mm512_mul_ps(dw, _mm512_set1_ps(_cvtsh_ss(xb->d)));
        acc[t] = _mm512_fmadd_ps(d, _mm512_cvtepi32_ps(s), acc[t]);
      }
    }
    for (int t = 0; t < NX; ++t) {
      out[t * 2] = Reduce8(_mm512_castps512_ps256(acc[t]));
      out[t * 2 + 1] = Reduce8(_mm512_extractf32x8_ps(acc[t], 1));
    }
  }
};

// Four weight rows as two RunPair registers sharing each token's activation block.
template <int NX>
void Q8Dot::RunQuad(int64_t nb, const uint8_t* w, size_t ws, const uint8_t* x, size_t xs,
                    float* out) {
  const __m512i zero = _mm512_setzero_si512();
  const __m512i k128 = _mm512_set1_epi8(static_cast<char>(0x80));
  const __m256i flip = _mm256_set1_epi8(static_cast<char>(0x80));
  __m512 acc[2][NX];
#pragma GCC unroll 4
  for (int t = 0; t < NX; ++t) acc[0][t] = acc[1][t] = _mm512_setzero_ps();
  const BlockQ8_0* wr[4];
  for (int r = 0; r < 4; ++r) wr[r] = reinterpret_cast<const BlockQ8_0*>(w + r * ws);
  auto pair = [&](const BlockQ8_0& a, const BlockQ8_0& b) {
    return _mm512_inserti64x4(
        _mm512_castsi256_si512(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(a.qs))),
        _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b.qs)), 1);
  };
  // Software prefetch of the four weight streams a few cache lines ahead: with few tokens the
  // loop is compute-heavy and the hardware prefetcher alone leaves the loads exposed.
  constexpr int64_t kPrefetchBlocks = 16;  // 544 bytes ahead
  for (int64_t b = 0; b < nb; ++b) {
    for (const BlockQ8_0* w : wr)
      _mm_prefetch(reinterpret_cast<const char*>(w + b + kPrefetchBlocks), _MM_HINT_T0);
    const __m512i w01 = pair(wr[0][b], wr[1][b]);
    const __m512i w23 = pair(wr[2][b], wr[3][b]);
    const __m512i c01 = _mm512_sub_epi32(zero, _mm512_dpbusd_epi32(zero, k128, w01));
    const __m512i c23 = _mm512_sub_epi32(zero, _mm512_dpbusd_epi32(zero, k128, w23));
    const __m512 d01 = _mm512_insertf32x8(_mm512_set1_ps(_cvtsh_ss(wr[0][b].d)),
                                          _mm256_set1_ps(_cvtsh_ss(wr[1][b].d)), 1);
    const __m512 d23 = _mm512_insertf32x8(_mm512_set1_ps(_cvtsh_ss(wr[2][b].d)),
                                          _mm256_set1_ps(_cvtsh_ss(wr[3][b].d)), 1);
#pragma GCC unroll 4
    for (int t = 0; t < NX; ++t) {
      const BlockQ8_0* xb = reinterpret_cast<const BlockQ8_0*>(x + t * xs) + b;
      const __m512i xu = _mm512_broadcast_i64x4(
          _mm256_xor_si256(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(xb->qs)), flip));
      const __m512 dx = _mm512_set1_ps(_cvtsh_ss(xb->d));
      acc[0][t] = _mm512_fmadd_ps(_mm512_mul_ps(d01, dx),
                                  _mm512_cvtepi32_ps(_mm512_dpbusd_epi32(c01, xu, w01)), acc[0][t]);
      acc[1][t] = _mm512_fmadd_ps(_mm512_mul_ps(d23, dx),
                                  _mm512_cvtepi32_ps(_mm512_dpbusd_epi32(c23, xu, w23)), acc[1][t]);
    }
  }
  for (int t = 0; t < NX; ++t) {
    out[t * 4 + 0] = Reduce8(_mm512_castps512_ps256(acc[0][t]));
    out[t * 4 + 1] = Reduce8(_mm512_extractf32x8_ps(acc[0][t], 1));
    out[t * 4 + 2] = Reduce8(_mm512_castps512_ps256(acc[1][t]));
    out[t * 4 + 3] = Reduce8(_mm512_extractf32x8_ps(acc[1][t], 1));
  }
}

// ---- Q8_0 GEMM tile over prepared activations ----------------------------------------------
// A prepared token group (see TypeKernels::prepare_tile_x) of n = 32 * nb elements:
//   [nb][4 tokens][32] uint8  x + 128 (the offset form of RunPair)
//   [nb][4 tokens]     float  the block scales, converted exactly from fp16 (0 for absent tokens)
// so the tile loop loads activation bytes and scales with plain loads: no per-token flip,
// broadcast or fp16 conversion. Each (row, token) keeps its own 8-lane accumulator and the
// per-block fma(dw * dx, lanes) of the Q8Dot order, reduced by Reduce8: results are those of
// VecDotTile<Q8Dot> bit for bit.
constexpr int kGroup = internal::kMaxDotCols;
static_assert(kGroup == 4, "the prepared layout holds 4 tokens per block");
constexpr size_t kPrepQsBytes = kGroup * kQK;  // per block

size_t Q8TileXBytes(int64_t n) {
  return static_cast<size_t>(n / kQK) * (kPrepQsBytes + kGroup * sizeof(float));
}

void Q8PrepareTileX(const void* x, size_t xs, int nx, void* dst, int64_t n) {
  const int64_t nb = n / kQK;
  uint8_t* qs = static_cast<uint8_t*>(dst);
  float* ds = reinterpret_cast<float*>(qs + nb * kPrepQsBytes);
  const __m256i flip = _mm256_set1_epi8(static_cast<char>(0x80));
  for (int64_t b = 0; b < nb; ++b) {
    for (int t = 0; t < kGroup; ++t) {
      __m256i v = _mm256_setzero_si256();
      float d = 0.0f;
      if (t < nx) {
        const BlockQ8_0* xb =
            reinterpret_cast<const BlockQ8_0*>(static_cast<const uint8_t*>(x) + t * xs) + b;
        v = _mm256_xor_si256(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(xb->qs)), flip);
        d = fp16_to_f32(xb->d);
      }
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(qs + b * kPrepQsBytes + t * kQK), v);
      ds[b * kGroup + t] = d;
    }
  }
}

// NR weight rows x NX tokens (of one prepared group), one 256-bit accumulator each (256-bit
// operations cost half a 512-bit one on Zen 4, and no row pairs need packing). Per block and
// row: the weight bytes, the offset correction -128 * (sums of 4 weights) and the scale
// products dw * dx for the 4 tokens (one 128-bit multiply, kept in memory so that the fma
// takes each as a broadcast operand; see below).
template <int NR, int NX>
void Q8PreparedRun(int64_t nb, const uint8_t* w, size_t ws, const uint8_t* g, float* y, size_t ys) {
  const __m256i zero = _mm256_setzero_si256();
  const __m256i k128 = _mm256_set1_epi8(static_cast<char>(0x80));
  const uint8_t* xq = g;
  const float* xd = reinterpret_cast<const float*>(g + nb * kPrepQsBytes);
  const BlockQ8_0* wr[NR];
#pragma GCC unroll 4
  for (int r = 0; r < NR; ++r) wr[r] = reinterpret_cast<const BlockQ8_0*>(w + r * ws);
  __m256 acc[NR][NX];
#pragma GCC unroll 4
  for (int r = 0; r < NR; ++r)
#pragma GCC unroll 4
    for (int t = 0; t < NX; ++t) acc[r][t] = _mm256_setzero_ps();
  // The scale products dw * dx of block b are computed one block ahead, into the other half of
  // a double buffer: the fma's broadcast loads then read stores that have long retired. Loading
  // them right after the 128-bit stores (store-to-load forwarding into broadcasts) took about
  // a third of the tile's time.
  alignas(64) float pb[2][NR * kGroup];
  auto scales = [&](int64_t blk, float* dst) {
    const __m128 dx = _mm_load_ps(xd + blk * kGroup);
#pragma GCC unroll 4
    for (int r = 0; r < NR; ++r) {
      const __m128 dw = _mm_cvtph_ps(_mm_set1_epi16(static_cast<short>(wr[r][blk].d)));
      _mm_store_ps(dst + r * kGroup, _mm_mul_ps(dw, dx));
    }
  };
  scales(0, pb[0]);
  // Software prefetch of the next tile's weight rows (MatMul's next call: NR * ws bytes on,
  // contiguous), linearly at the pace this tile consumes its own NR rows. With few tokens the
  // loop streams weights from DRAM, and NR interleaved row streams alone get about half the
  // bandwidth of one sequential stream (measured: 2x on a 4-token, 63 MB matrix).
  const char* next = reinterpret_cast<const char*>(w) + NR * ws;
  constexpr size_t kStep = NR * sizeof(BlockQ8_0);  // at most 3 cache lines per block
  for (int64_t b = 0; b < nb; ++b) {
    const char* pf = next + b * kStep;
    _mm_prefetch(pf, _MM_HINT_T0);
    if constexpr (kStep > 64) _mm_prefetch(pf + 64, _MM_HINT_T0);
    if constexpr (kStep > 128) _mm_prefetch(pf + 128, _MM_HINT_T0);
    const float* p = pb[b & 1];
    if (b + 1 < nb) scales(b + 1, pb[(b + 1) & 1]);
    __m256i wv[NR], corr[NR];
#pragma GCC unroll 4
    for (int r = 0; r < NR; ++r) {
      wv[r] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(wr[r][b].qs));
      corr[r] = _mm256_sub_epi32(zero, _mm256_dpbusd_epi32(zero, k128, wv[r]));
    }
#pragma GCC unroll 4
    for (int t = 0; t < NX; ++t) {
      const __m256i xu =
          _mm256_load_si256(reinterpret_cast<const __m256i*>(xq + b * kPrepQsBytes + t * kQK));
#pragma GCC unroll 4
      for (int r = 0; r < NR; ++r) {
        const __m256i s = _mm256_dpbusd_epi32(corr[r], xu, wv[r]);
        acc[r][t] = _mm256_fmadd_ps(_mm256_broadcast_ss(p + r * kGroup + t), _mm256_cvtepi32_ps(s),
                                    acc[r][t]);
      }
    }
  }
#pragma GCC unroll 4
  for (int t = 0; t < NX; ++t)
#pragma GCC unroll 4
    for (int r = 0; r < NR; ++r) y[t * ys + r] = Reduce8(acc[r][t]);
}

template <int NR>
void Q8PreparedRows(int64_t nb, const uint8_t* w, size_t ws, const uint8_t* g, int nx, float* y,
                    size_t ys) {
  switch (nx) {
    case 4: Q8PreparedRun<NR, 4>(nb, w, ws, g, y, ys); break;
    case 3: Q8PreparedRun<NR, 3>(nb, w, ws, g, y, ys); break;
    case 2: Q8PreparedRun<NR, 2>(nb, w, ws, g, y, ys); break;
    default: Q8PreparedRun<NR, 1>(nb, w, ws, g, y, ys);
  }
}

void Q8PreparedTile(int64_t n, const void* w, size_t ws, int nw, const void* x, size_t xs, int nx,
                    float* y, size_t ys) {
  (void)xs;
  const int64_t nb = n / kQK;
  const uint8_t* wp = static_cast<const uint8_t*>(w);
  const uint8_t* g = static_cast<const uint8_t*>(x);
  switch (nw) {
    case 4: Q8PreparedRows<4>(nb, wp, ws, g, nx, y, ys); break;
    case 3: Q8PreparedRows<3>(nb, wp, ws, g, nx, y, ys); break;
    case 2: Q8PreparedRows<2>(nb, wp, ws, g, nx, y, ys); break;
    default: Q8PreparedRows<1>(nb, wp, ws, g, nx, y, ys);
  }
}

template <class L>
struct FloatDot {
  template <int NR, int NX>
  static void Run(int64_t n, const uint8_t* w, size_t ws, const uint8_t* x, size_t xs, float* out) {
    for (int r = 0; r < NR; ++r) {
      float o[NX];
      DotFloat<L, NX>(n, w + r * ws, x, xs, o);
      for (int t = 0; t < NX; ++t) out[t * NR + r] = o[t];
    }
  }
};

struct BF16Dot {
  template <int NR, int NX>
  static void Run(int64_t n, const uint8_t* w, size_t ws, const uint8_t* x, size_t xs, float* out) {
    for (int r = 0; r < NR; ++r) {
      float o[NX];
      DotBF16<NX>(n, w + r * ws, x, xs, o);
      for (int t = 0; t < NX; ++t) out[t * NR + r] = o[t];
    }
  }
};

using internal::VecDotOne;
using internal::VecDotTile;
namespace lb2 = internal::lowbit_avx2;
namespace lb512 = internal::lowbit_avx512;

const TypeKernels kTypes[] = {
    {DType::F32, DType::F32, nullptr, DotF32Vec, VecDotTile<FloatDot<LoadF32>>},
    {DType::F16, DType::F16, QuantizeF16, DotF16Vec, VecDotTile<FloatDot<LoadF16>>},
    {DType::BF16, DType::BF16, QuantizeBF16, DotBF16Vec, VecDotTile<BF16Dot>},
    {DType::Q8_0, DType::Q8_0, QuantizeQ8_0, VecDotOne<Q8Dot>, VecDotTile<Q8Dot>, nullptr, nullptr,
     Q8PrepareTileX, Q8TileXBytes, Q8PreparedTile},
    // 4/5/6-bit types: AVX-512 kernels for Q4_K and Q6_K (the types of the _M files) and the
    // repacked Q4_0 order, AVX2 ones for plain Q4_0 (rows not a multiple of 8) and Q5_K.
    {DType::Q4_0, DType::Q8_0, QuantizeQ8_0, lb2::DotQ4_0Plain,
     internal::PerEntryTile<lb2::DotQ4_0Plain>, lb512::DotQ4_0Repack, lb512::TileQ4_0Repack,
     lb512::Q4_0PrepareTileX, lb512::Q4_0TileXBytes, lb512::Q4_0PreparedTile,
     lb512::TileQ4_0Repack},
    {DType::Q4_K, DType::Q8_K, QuantizeQ8K, lb2::DotQ4_KPlain,
     internal::PerEntryTile<lb2::DotQ4_KPlain>, lb512::DotQ4_KRepackGemv, lb512::TileQ4_KRepackGemm,
     lb512::Q4_KPrepareTileX, lb512::Q4_KTileXBytes, lb512::Q4_KPreparedTile,
     lb512::TileQ4_KRepackGemv},
    {DType::Q5_K, DType::Q8_K, QuantizeQ8K, lb2::DotQ5_KPlain,
     internal::PerEntryTile<lb2::DotQ5_KPlain>},
    {DType::Q6_K, DType::Q8_K, QuantizeQ8K, lb512::DotQ6_KPlain, lb512::TileQ6_K, nullptr, nullptr,
     nullptr, nullptr, nullptr, nullptr, false},
};

// ---- row kernels -------------------------------------------------------------------------

void RmsNorm(const float* x, const float* w, float* y, int64_t n, float eps) {
  // Sum of squares in double, sequentially like llama.cpp's rms_norm, so that the rounded mean
  // is the same bit for bit (a lane-split double sum differs in rare last-bit cases).
  double sum = 0.0;
  for (int64_t i = 0; i < n; ++i) sum += static_cast<double>(x[i] * x[i]);
  const float mean = static_cast<float>(sum / static_cast<double>(n));
  const float scale = 1.0f / std::sqrt(mean + eps);
  const __m512 sv = _mm512_set1_ps(scale);
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 m = Mask16(std::min<int64_t>(16, n - i));
    const __m512 r = _mm512_mul_ps(_mm512_mul_ps(_mm512_maskz_loadu_ps(m, x + i), sv),
                                   _mm512_maskz_loadu_ps(m, w + i));
    _mm512_mask_storeu_ps(y + i, m, r);
  }
}

void Softmax(float* x, int64_t n) {
  if (n <= 0) return;
  const __m512 ninf = _mm512_set1_ps(-std::numeric_limits<float>::infinity());
  __m512 mv = ninf;
  for (int64_t i = 0; i < n; i += 16)
    mv = _mm512_max_ps(mv, _mm512_mask_loadu_ps(ninf, Mask16(std::min<int64_t>(16, n - i)), x + i));
  const __m512 max = _mm512_set1_ps(_mm512_reduce_max_ps(mv));
  __m512d s0 = _mm512_setzero_pd(), s1 = _mm512_setzero_pd();
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 m = Mask16(std::min<int64_t>(16, n - i));
    const __m512 e =
        _mm512_maskz_mov_ps(m, Exp(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, x + i), max)));
    _mm512_mask_storeu_ps(x + i, m, e);
    s0 = _mm512_add_pd(s0, _mm512_cvtps_pd(_mm512_castps512_ps256(e)));
    s1 = _mm512_add_pd(s1, _mm512_cvtps_pd(_mm512_extractf32x8_ps(e, 1)));
  }
  const __m512 inv =
      _mm512_set1_ps(static_cast<float>(1.0 / _mm512_reduce_add_pd(_mm512_add_pd(s0, s1))));
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 m = Mask16(std::min<int64_t>(16, n - i));
    _mm512_mask_storeu_ps(x + i, m, _mm512_mul_ps(_mm512_maskz_loadu_ps(m, x + i), inv));
  }
}

// Same results as ref::SiluMul: whole groups of 16 with ExpPoly, the tail with libm's exp.
void SiluMul(float* gate, const float* up, int64_t n) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m512 g = _mm512_loadu_ps(gate + i);
    const __m512 e = ExpPoly(_mm512_sub_ps(_mm512_setzero_ps(), g));
    _mm512_storeu_ps(gate + i,
                     _mm512_mul_ps(_mm512_div_ps(g, _mm512_add_ps(_mm512_set1_ps(1.0f), e)),
                                   _mm512_loadu_ps(up + i)));
  }
  for (; i < n; ++i) gate[i] = gate[i] / (1.0f + std::exp(-gate[i])) * up[i];
}

void Add(float* y, const float* x, int64_t n) {
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 m = Mask16(std::min<int64_t>(16, n - i));
    _mm512_mask_storeu_ps(
        y + i, m, _mm512_add_ps(_mm512_maskz_loadu_ps(m, y + i), _mm512_maskz_loadu_ps(m, x + i)));
  }
}

}  // namespace

}  // namespace avx512

namespace internal {

const IsaKernels& Avx512Kernels() {
  static const IsaKernels k = {
      "avx512",
      avx512::kTypes,
      static_cast<int>(std::size(avx512::kTypes)),
      avx512::RmsNorm,
      avx512::Softmax,
      avx512::SiluMul,
      avx512::Add,
      avx512::Attention,
      avx512::AttentionTiled,
      avx512::AttentionKvPartialFast,
      avx512::MergeAttentionPartials,
      AccumulateKvRowAvx2,
  };
  return k;
}

}  // namespace internal
}  // namespace strata::kernels
