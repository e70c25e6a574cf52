// AVX-512 (F/BW/VL/DQ/VNNI) kernels. Compiled with the AVX-512 flags and -ffp-contract=off;
// only reached after the dispatcher has checked the CPU.
#include <immintrin.h>

#include <cmath>
#include <algorithm>
#include <cstring>
#include <iterator>
#include <limits>

#include "base/fp16.h"
#include "kernels/kernels.h"
#include "kernels/kernels_impl.h"

namespace strata::kernels {
namespace avx512 {
namespace {

using internal::TypeKernels;

constexpr int kQK = 32;

inline __mmask16 Mask16(int64_t rem) {  // lanes [0, rem) for 0 <= rem <= 16
  return static_cast<__mmask16>((1u << rem) - 1u);
}

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
  const __m512i bias = _mm512_add_epi32(_mm512_set1_epi32(0x7fff),
                                        _mm512_and_si512(hi, _mm512_set1_epi32(1)));
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
  BlockQ8_0* y = static_cast<BlockQ8_0*>(dst);
  for (int64_t b = 0; b < n / kQK; ++b) {
    const float* xb = x + b * kQK;
    const __m512 v0 = _mm512_loadu_ps(xb);
    const __m512 v1 = _mm512_loadu_ps(xb + 16);
    const float amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(v0), _mm512_abs_ps(v1)));
    const float d = amax / 127.0f;
    const float id = amax != 0.0f ? 127.0f / amax : 0.0f;
    y[b].d = f32_to_fp16(d);
    const __m512 mul = _mm512_set1_ps(id);
    const __m512i q0 = _mm512_cvt_roundps_epi32(_mm512_mul_ps(v0, mul),
                                                _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    const __m512i q1 = _mm512_cvt_roundps_epi32(_mm512_mul_ps(v1, mul),
                                                _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(y[b].qs), _mm512_cvtsepi32_epi8(q0));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(y[b].qs + 16), _mm512_cvtsepi32_epi8(q1));
  }
}

// ---- dot products ------------------------------------------------------------------------

struct LoadF32 {
  static __m512 Load(const void* p, int64_t i) { return _mm512_loadu_ps(static_cast<const float*>(p) + i); }
  static __m512 LoadMasked(const void* p, int64_t i, __mmask16 m) {
    return _mm512_maskz_loadu_ps(m, static_cast<const float*>(p) + i);
  }
};

struct LoadF16 {
  static __m512 Load(const void* p, int64_t i) {
    return _mm512_cvtph_ps(_mm256_loadu_si256(
        reinterpret_cast<const __m256i*>(static_cast<const uint16_t*>(p) + i)));
  }
  static __m512 LoadMasked(const void* p, int64_t i, __mmask16 m) {
    return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, static_cast<const uint16_t*>(p) + i));
  }
};

struct LoadBF16 {
  static __m512 Widen(__m256i h) {
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
  }
  static __m512 Load(const void* p, int64_t i) {
    return Widen(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(static_cast<const uint16_t*>(p) + i)));
  }
  static __m512 LoadMasked(const void* p, int64_t i, __mmask16 m) {
    return Widen(_mm256_maskz_loadu_epi16(m, static_cast<const uint16_t*>(p) + i));
  }
};

// out[t] = dot(w, x + t*xs) for t < NX: 4 accumulators of 16 lanes per token, masked tail.
template <class L, int NX>
void DotFloat(int64_t n, const void* w, const uint8_t* x, size_t xs, float* out) {
  __m512 acc[NX][4];
  for (int t = 0; t < NX; ++t)
    for (int k = 0; k < 4; ++k) acc[t][k] = _mm512_setzero_ps();
  int64_t i = 0;
  for (; i + 64 <= n; i += 64) {
    for (int k = 0; k < 4; ++k) {
      const __m512 wv = L::Load(w, i + 16 * k);
      for (int t = 0; t < NX; ++t)
        acc[t][k] = _mm512_fmadd_ps(wv, L::Load(x + t * xs, i + 16 * k), acc[t][k]);
    }
  }
  for (; i + 16 <= n; i += 16) {
    const __m512 wv = L::Load(w, i);
    for (int t = 0; t < NX; ++t) acc[t][0] = _mm512_fmadd_ps(wv, L::Load(x + t * xs, i), acc[t][0]);
  }
  if (i < n) {
    const __mmask16 m = Mask16(n - i);
    const __m512 wv = L::LoadMasked(w, i, m);
    for (int t = 0; t < NX; ++t)
      acc[t][1] = _mm512_fmadd_ps(wv, L::LoadMasked(x + t * xs, i, m), acc[t][1]);
  }
  for (int t = 0; t < NX; ++t)
    out[t] = _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(acc[t][0], acc[t][1]),
                                                _mm512_add_ps(acc[t][2], acc[t][3])));
}

// Two consecutive Q8_0 blocks' quants in one register (block p in the low half).
inline __m512i LoadQ8Pair(const BlockQ8_0* p) {
  return _mm512_inserti64x4(
      _mm512_castsi256_si512(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p[0].qs))),
      _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p[1].qs)), 1);
}

inline __m512i LoadQ8Single(const BlockQ8_0* p) {
  return _mm512_zextsi256_si512(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p[0].qs)));
}

// Q8_0 x Q8_0 for NR weight rows x NX tokens, two blocks per 512-bit step: |w| (unsigned) .
// (x with w's sign) via VNNI vpdpbusd into int32 lanes (8 per block), converted and scaled by
// dw*dx into f32 lanes. Two accumulators per (row, token) alternate between steps.
struct Q8Dot {
  template <int NR, int NX>
  static void Run(int64_t n, const uint8_t* w, size_t ws, const uint8_t* x, size_t xs,
                  float* out) {
    const int64_t nb = n / kQK;
    const __m512i zero = _mm512_setzero_si512();
    __m512 acc[NR][NX][2];
    for (int r = 0; r < NR; ++r)
      for (int t = 0; t < NX; ++t) acc[r][t][0] = acc[r][t][1] = _mm512_setzero_ps();
    auto step = [&](int64_t b, bool pair, int slot) __attribute__((always_inline)) {
      __m512i xv[NX];
      float dx0[NX], dx1[NX];
      for (int t = 0; t < NX; ++t) {
        const BlockQ8_0* xb = reinterpret_cast<const BlockQ8_0*>(x + t * xs) + b;
        xv[t] = pair ? LoadQ8Pair(xb) : LoadQ8Single(xb);
        dx0[t] = _cvtsh_ss(xb[0].d);
        dx1[t] = pair ? _cvtsh_ss(xb[1].d) : 0.0f;
      }
      for (int r = 0; r < NR; ++r) {
        const BlockQ8_0* wb = reinterpret_cast<const BlockQ8_0*>(w + r * ws) + b;
        const __m512i wv = pair ? LoadQ8Pair(wb) : LoadQ8Single(wb);
        const __mmask64 neg = _mm512_movepi8_mask(wv);
        const __m512i aw = _mm512_abs_epi8(wv);
        const float dw0 = _cvtsh_ss(wb[0].d);
        const float dw1 = pair ? _cvtsh_ss(wb[1].d) : 0.0f;
        for (int t = 0; t < NX; ++t) {
          const __m512i sx = _mm512_mask_sub_epi8(xv[t], neg, zero, xv[t]);
          const __m512i s = _mm512_dpbusd_epi32(zero, aw, sx);
          const __m512 d = _mm512_insertf32x8(_mm512_set1_ps(dw0 * dx0[t]),
                                              _mm256_set1_ps(dw1 * dx1[t]), 1);
          acc[r][t][slot] = _mm512_fmadd_ps(d, _mm512_cvtepi32_ps(s), acc[r][t][slot]);
        }
      }
    };
    int64_t b = 0;
    for (; b + 4 <= nb; b += 4) {
      step(b, true, 0);
      step(b + 2, true, 1);
    }
    if (b + 2 <= nb) {
      step(b, true, 0);
      b += 2;
    }
    if (b < nb) step(b, false, 1);
    for (int r = 0; r < NR; ++r)
      for (int t = 0; t < NX; ++t)
        out[t * NR + r] = _mm512_reduce_add_ps(_mm512_add_ps(acc[r][t][0], acc[r][t][1]));
  }
};

template <class L>
struct FloatDot {
  template <int NR, int NX>
  static void Run(int64_t n, const uint8_t* w, size_t ws, const uint8_t* x, size_t xs,
                  float* out) {
    for (int r = 0; r < NR; ++r) {
      float o[NX];
      DotFloat<L, NX>(n, w + r * ws, x, xs, o);
      for (int t = 0; t < NX; ++t) out[t * NR + r] = o[t];
    }
  }
};

using internal::VecDotOne;
using internal::VecDotTile;

const TypeKernels kTypes[] = {
    {DType::F32, DType::F32, nullptr, VecDotOne<FloatDot<LoadF32>>, VecDotTile<FloatDot<LoadF32>>},
    {DType::F16, DType::F16, QuantizeF16, VecDotOne<FloatDot<LoadF16>>, VecDotTile<FloatDot<LoadF16>>},
    {DType::BF16, DType::BF16, QuantizeBF16, VecDotOne<FloatDot<LoadBF16>>, VecDotTile<FloatDot<LoadBF16>>},
    {DType::Q8_0, DType::Q8_0, QuantizeQ8_0, VecDotOne<Q8Dot>, VecDotTile<Q8Dot>},
};

// ---- row kernels -------------------------------------------------------------------------

void RmsNorm(const float* x, const float* w, float* y, int64_t n, float eps) {
  __m512d s0 = _mm512_setzero_pd(), s1 = _mm512_setzero_pd();
  for (int64_t i = 0; i < n; i += 16) {
    const __m512 v = _mm512_maskz_loadu_ps(Mask16(std::min<int64_t>(16, n - i)), x + i);
    const __m512 sq = _mm512_mul_ps(v, v);
    s0 = _mm512_add_pd(s0, _mm512_cvtps_pd(_mm512_castps512_ps256(sq)));
    s1 = _mm512_add_pd(s1, _mm512_cvtps_pd(_mm512_extractf32x8_ps(sq, 1)));
  }
  const double sum = _mm512_reduce_add_pd(_mm512_add_pd(s0, s1));
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
    const __m512 e = _mm512_maskz_mov_ps(m, Exp(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, x + i), max)));
    _mm512_mask_storeu_ps(x + i, m, e);
    s0 = _mm512_add_pd(s0, _mm512_cvtps_pd(_mm512_castps512_ps256(e)));
    s1 = _mm512_add_pd(s1, _mm512_cvtps_pd(_mm512_extractf32x8_ps(e, 1)));
  }
  const __m512 inv = _mm512_set1_ps(static_cast<float>(1.0 / _mm512_reduce_add_pd(_mm512_add_pd(s0, s1))));
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 m = Mask16(std::min<int64_t>(16, n - i));
    _mm512_mask_storeu_ps(x + i, m, _mm512_mul_ps(_mm512_maskz_loadu_ps(m, x + i), inv));
  }
}

void SiluMul(float* gate, const float* up, int64_t n) {
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 m = Mask16(std::min<int64_t>(16, n - i));
    const __m512 g = _mm512_maskz_loadu_ps(m, gate + i);
    const __m512 e = Exp(_mm512_sub_ps(_mm512_setzero_ps(), g));
    const __m512 r = _mm512_mul_ps(_mm512_div_ps(g, _mm512_add_ps(_mm512_set1_ps(1.0f), e)),
                                   _mm512_maskz_loadu_ps(m, up + i));
    _mm512_mask_storeu_ps(gate + i, m, r);
  }
}

void Add(float* y, const float* x, int64_t n) {
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 m = Mask16(std::min<int64_t>(16, n - i));
    _mm512_mask_storeu_ps(y + i, m, _mm512_add_ps(_mm512_maskz_loadu_ps(m, y + i),
                                                  _mm512_maskz_loadu_ps(m, x + i)));
  }
}

// Same algorithm as ref::Attention (llama.cpp's CPU flash attention), 16 lanes at a time.
__m512 RoundF16(__m512 x) {
  return _mm512_cvtph_ps(_mm512_cvtps_ph(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
}

void Attention(const float* q, const uint16_t* k, const uint16_t* v, int64_t n_kv,
               int64_t kv_stride, int n_heads, int n_kv_heads, int head_dim, float scale,
               float* out, float* scratch) {
  (void)scratch;
  const int group = n_heads / n_kv_heads;
  const int n_vec = (head_dim + 15) / 16;
  const __mmask16 tail = Mask16(head_dim - (n_vec - 1) * 16);
  alignas(64) float acc[kMaxHeadDim];
  alignas(64) float q16[kMaxHeadDim];
  for (int h = 0; h < n_heads; ++h) {
    const int64_t col = static_cast<int64_t>(h / group) * head_dim;
    const float* qh = q + static_cast<int64_t>(h) * head_dim;
    for (int i = 0; i < n_vec; ++i) {
      const __mmask16 m = i + 1 == n_vec ? tail : 0xFFFF;
      _mm512_store_ps(q16 + 16 * i, RoundF16(_mm512_maskz_loadu_ps(m, qh + 16 * i)));
      _mm512_store_ps(acc + 16 * i, _mm512_setzero_ps());
    }
    float mx = -INFINITY, sum = 0.0f;
    for (int64_t j = 0; j < n_kv; ++j) {
      const uint16_t* kj = k + j * kv_stride + col;
      __m512 a = _mm512_setzero_ps();
      for (int i = 0; i < n_vec; ++i) {
        const __mmask16 m = i + 1 == n_vec ? tail : 0xFFFF;
        a = _mm512_fmadd_ps(_mm512_load_ps(q16 + 16 * i), LoadF16::LoadMasked(kj, 16 * i, m), a);
      }
      const float s = _mm512_reduce_add_ps(a) * scale;
      float ms = 1.0f, vs = 1.0f;
      if (s > mx) {
        ms = std::exp(mx - s);
        mx = s;
        const __m512 vms = _mm512_set1_ps(ms);
        for (int i = 0; i < n_vec; ++i)
          _mm512_store_ps(acc + 16 * i, RoundF16(_mm512_mul_ps(_mm512_load_ps(acc + 16 * i), vms)));
      } else {
        vs = std::exp(s - mx);
      }
      const uint16_t* vj = v + j * kv_stride + col;
      const __m512 vvs = _mm512_set1_ps(vs);
      for (int i = 0; i < n_vec; ++i) {
        const __mmask16 m = i + 1 == n_vec ? tail : 0xFFFF;
        _mm512_store_ps(acc + 16 * i, RoundF16(_mm512_fmadd_ps(LoadF16::LoadMasked(vj, 16 * i, m),
                                                               vvs, _mm512_load_ps(acc + 16 * i))));
      }
      sum = sum * ms + vs;
    }
    const __m512 inv = _mm512_set1_ps(sum == 0.0f ? 0.0f : 1.0f / sum);
    float* oh = out + static_cast<int64_t>(h) * head_dim;
    for (int i = 0; i < n_vec; ++i) {
      const __mmask16 m = i + 1 == n_vec ? tail : 0xFFFF;
      _mm512_mask_storeu_ps(oh + 16 * i, m, _mm512_mul_ps(_mm512_load_ps(acc + 16 * i), inv));
    }
  }
}

}  // namespace
}  // namespace avx512

namespace internal {

const IsaKernels& Avx512Kernels() {
  static const IsaKernels k = {
      "avx512", avx512::kTypes, static_cast<int>(std::size(avx512::kTypes)), avx512::RmsNorm, avx512::Softmax,
      avx512::SiluMul, avx512::Add, avx512::Attention,
  };
  return k;
}

}  // namespace internal
}  // namespace strata::kernels
