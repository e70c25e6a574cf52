// AVX2 + FMA + F16C kernels. Compiled with -mavx2 -mfma -mf16c -ffp-contract=off; only
// reached after the dispatcher has checked the CPU.
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
namespace avx2 {
namespace {

using internal::TypeKernels;

constexpr int kQK = 32;

inline float HSum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

inline double HSum(__m256d v) {
  __m128d s = _mm_add_pd(_mm256_castpd256_pd128(v), _mm256_extractf128_pd(v, 1));
  s = _mm_add_sd(s, _mm_unpackhi_pd(s, s));
  return _mm_cvtsd_f64(s);
}

inline float HMax(__m256 v) {
  __m128 s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_max_ps(s, _mm_movehl_ps(s, s));
  s = _mm_max_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

// Lanes [0, rem) set, 0 <= rem <= 8.
inline __m256i TailMask(int64_t rem) {
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(rem)),
                            _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

// e^x to within a few ulp: x = n*ln2 + r, |r| <= ln2/2, e^r by a degree-7 Taylor polynomial,
// 2^n applied as two factors so results down in the subnormal range come out right.
inline __m256 Exp(__m256 x) {
  x = _mm256_max_ps(_mm256_set1_ps(-104.0f), x);  // constant first: NaN propagates
  x = _mm256_min_ps(_mm256_set1_ps(89.0f), x);
  const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                                   _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693145751953125f), x);
  r = _mm256_fnmadd_ps(n, _mm256_set1_ps(1.428606765330187e-6f), r);
  __m256 p = _mm256_set1_ps(1.0f / 5040.0f);
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 720.0f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 120.0f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 24.0f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 6.0f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(0.5f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
  const __m256i ni = _mm256_cvtps_epi32(n);
  const __m256i n1 = _mm256_srai_epi32(ni, 1);
  const __m256i n2 = _mm256_sub_epi32(ni, n1);
  const __m256i bias = _mm256_set1_epi32(127);
  const __m256 s1 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n1, bias), 23));
  const __m256 s2 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n2, bias), 23));
  return _mm256_mul_ps(_mm256_mul_ps(p, s1), s2);
}

// ---- activation converters --------------------------------------------------------------

void QuantizeF16(const float* x, void* dst, int64_t n) {
  uint16_t* y = static_cast<uint16_t*>(dst);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m128i h = _mm256_cvtps_ph(_mm256_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(y + i), h);
  }
  for (; i < n; ++i) y[i] = f32_to_fp16(x[i]);
}

void QuantizeBF16(const float* x, void* dst, int64_t n) {
  uint16_t* y = static_cast<uint16_t*>(dst);
  const __m256i abs_mask = _mm256_set1_epi32(0x7fffffff);
  const __m256i inf = _mm256_set1_epi32(0x7f800000);
  const __m256i round = _mm256_set1_epi32(0x7fff);
  const __m256i one = _mm256_set1_epi32(1);
  const __m256i quiet = _mm256_set1_epi32(64);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256i u = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x + i));
    const __m256i hi = _mm256_srli_epi32(u, 16);
    const __m256i is_nan = _mm256_cmpgt_epi32(_mm256_and_si256(u, abs_mask), inf);
    const __m256i bias = _mm256_add_epi32(round, _mm256_and_si256(hi, one));
    const __m256i rounded = _mm256_srli_epi32(_mm256_add_epi32(u, bias), 16);
    const __m256i r = _mm256_blendv_epi8(rounded, _mm256_or_si256(hi, quiet), is_nan);
    const __m256i packed = _mm256_permute4x64_epi64(_mm256_packus_epi32(r, r), 0x08);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(y + i), _mm256_castsi256_si128(packed));
  }
  for (; i < n; ++i) y[i] = f32_to_bf16(x[i]);
}

void QuantizeQ8_0(const float* x, void* dst, int64_t n) {
  BlockQ8_0* y = static_cast<BlockQ8_0*>(dst);
  const __m256 sign = _mm256_set1_ps(-0.0f);
  const __m256i perm = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
  for (int64_t b = 0; b < n / kQK; ++b) {
    const float* xb = x + b * kQK;
    __m256 v[4];
    for (int k = 0; k < 4; ++k) v[k] = _mm256_loadu_ps(xb + 8 * k);
    const __m256 m = _mm256_max_ps(_mm256_max_ps(_mm256_andnot_ps(sign, v[0]), _mm256_andnot_ps(sign, v[1])),
                                   _mm256_max_ps(_mm256_andnot_ps(sign, v[2]), _mm256_andnot_ps(sign, v[3])));
    const float amax = HMax(m);
    const float d = amax / 127.0f;
    const float id = amax != 0.0f ? 127.0f / amax : 0.0f;
    y[b].d = f32_to_fp16(d);
    const __m256 mul = _mm256_set1_ps(id);
    __m256i q[4];
    for (int k = 0; k < 4; ++k)
      q[k] = _mm256_cvtps_epi32(_mm256_round_ps(_mm256_mul_ps(v[k], mul),
                                                _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
    const __m256i p01 = _mm256_packs_epi32(q[0], q[1]);
    const __m256i p23 = _mm256_packs_epi32(q[2], q[3]);
    const __m256i p = _mm256_permutevar8x32_epi32(_mm256_packs_epi16(p01, p23), perm);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(y[b].qs), p);
  }
}

// ---- dot products ------------------------------------------------------------------------

struct LoadF32 {
  static __m256 Load(const void* p, int64_t i) {
    return _mm256_loadu_ps(static_cast<const float*>(p) + i);
  }
  static float One(const void* p, int64_t i) { return static_cast<const float*>(p)[i]; }
};

struct LoadF16 {
  static __m256 Load(const void* p, int64_t i) {
    return _mm256_cvtph_ps(
        _mm_loadu_si128(reinterpret_cast<const __m128i*>(static_cast<const uint16_t*>(p) + i)));
  }
  static float One(const void* p, int64_t i) { return fp16_to_f32(static_cast<const uint16_t*>(p)[i]); }
};

struct LoadBF16 {
  static __m256 Load(const void* p, int64_t i) {
    const __m128i h =
        _mm_loadu_si128(reinterpret_cast<const __m128i*>(static_cast<const uint16_t*>(p) + i));
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
  }
  static float One(const void* p, int64_t i) { return bf16_to_f32(static_cast<const uint16_t*>(p)[i]); }
};

// out[t] = dot(w, x + t*xs) for t < NX: 4 accumulators of 8 lanes per token, scalar tail.
template <class L, int NX>
void DotFloat(int64_t n, const void* w, const uint8_t* x, size_t xs, float* out) {
  __m256 acc[NX][4];
  for (int t = 0; t < NX; ++t)
    for (int k = 0; k < 4; ++k) acc[t][k] = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    for (int k = 0; k < 4; ++k) {
      const __m256 wv = L::Load(w, i + 8 * k);
      for (int t = 0; t < NX; ++t)
        acc[t][k] = _mm256_fmadd_ps(wv, L::Load(x + t * xs, i + 8 * k), acc[t][k]);
    }
  }
  for (; i + 8 <= n; i += 8) {
    const __m256 wv = L::Load(w, i);
    for (int t = 0; t < NX; ++t) acc[t][0] = _mm256_fmadd_ps(wv, L::Load(x + t * xs, i), acc[t][0]);
  }
  for (int t = 0; t < NX; ++t) {
    float s = HSum(_mm256_add_ps(_mm256_add_ps(acc[t][0], acc[t][1]),
                                 _mm256_add_ps(acc[t][2], acc[t][3])));
    for (int64_t j = i; j < n; ++j) s += L::One(w, j) * L::One(x + t * xs, j);
    out[t] = s;
  }
}

// Q8_0 x Q8_0 for NR weight rows x NX tokens: per block, |w| (unsigned) times x with w's sign
// (signed) through maddubs, pairs summed to int32, scaled by dw*dx and accumulated in f32 lanes.
struct Q8Dot {
  template <int NR, int NX>
  static void Run(int64_t n, const uint8_t* w, size_t ws, const uint8_t* x, size_t xs,
                  float* out) {
    const int64_t nb = n / kQK;
    const __m256i ones = _mm256_set1_epi16(1);
    __m256 acc[NR][NX];
    for (int r = 0; r < NR; ++r)
      for (int t = 0; t < NX; ++t) acc[r][t] = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; ++b) {
      __m256i xv[NX];
      float dx[NX];
      for (int t = 0; t < NX; ++t) {
        const BlockQ8_0* xb = reinterpret_cast<const BlockQ8_0*>(x + t * xs) + b;
        xv[t] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xb->qs));
        dx[t] = _cvtsh_ss(xb->d);
      }
      for (int r = 0; r < NR; ++r) {
        const BlockQ8_0* wb = reinterpret_cast<const BlockQ8_0*>(w + r * ws) + b;
        const __m256i wv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(wb->qs));
        const __m256i aw = _mm256_sign_epi8(wv, wv);
        const float dw = _cvtsh_ss(wb->d);
        for (int t = 0; t < NX; ++t) {
          const __m256i sx = _mm256_sign_epi8(xv[t], wv);
          const __m256i p = _mm256_madd_epi16(_mm256_maddubs_epi16(aw, sx), ones);
          acc[r][t] = _mm256_fmadd_ps(_mm256_set1_ps(dw * dx[t]), _mm256_cvtepi32_ps(p), acc[r][t]);
        }
      }
    }
    for (int r = 0; r < NR; ++r)
      for (int t = 0; t < NX; ++t) out[t * NR + r] = HSum(acc[r][t]);
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
  __m256d s0 = _mm256_setzero_pd(), s1 = _mm256_setzero_pd();
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 v = _mm256_loadu_ps(x + i);
    const __m256 sq = _mm256_mul_ps(v, v);
    s0 = _mm256_add_pd(s0, _mm256_cvtps_pd(_mm256_castps256_ps128(sq)));
    s1 = _mm256_add_pd(s1, _mm256_cvtps_pd(_mm256_extractf128_ps(sq, 1)));
  }
  double sum = HSum(_mm256_add_pd(s0, s1));
  for (int64_t j = i; j < n; ++j) sum += static_cast<double>(x[j] * x[j]);
  const float mean = static_cast<float>(sum / static_cast<double>(n));
  const float scale = 1.0f / std::sqrt(mean + eps);
  const __m256 sv = _mm256_set1_ps(scale);
  for (i = 0; i + 8 <= n; i += 8)
    _mm256_storeu_ps(y + i, _mm256_mul_ps(_mm256_mul_ps(_mm256_loadu_ps(x + i), sv),
                                          _mm256_loadu_ps(w + i)));
  for (; i < n; ++i) y[i] = (x[i] * scale) * w[i];
}

void Softmax(float* x, int64_t n) {
  if (n <= 0) return;
  const int64_t n8 = n / 8 * 8;
  const __m256i tail = TailMask(n - n8);
  const __m256 ninf = _mm256_set1_ps(-std::numeric_limits<float>::infinity());
  __m256 mv = ninf;
  for (int64_t i = 0; i < n8; i += 8) mv = _mm256_max_ps(mv, _mm256_loadu_ps(x + i));
  if (n8 < n) mv = _mm256_max_ps(mv, _mm256_blendv_ps(ninf, _mm256_maskload_ps(x + n8, tail),
                                                      _mm256_castsi256_ps(tail)));
  const __m256 max = _mm256_set1_ps(HMax(mv));
  __m256d s0 = _mm256_setzero_pd(), s1 = _mm256_setzero_pd();
  auto exp_block = [&](__m256 v) {
    const __m256 e = Exp(_mm256_sub_ps(v, max));
    return e;
  };
  for (int64_t i = 0; i < n8; i += 8) {
    const __m256 e = exp_block(_mm256_loadu_ps(x + i));
    _mm256_storeu_ps(x + i, e);
    s0 = _mm256_add_pd(s0, _mm256_cvtps_pd(_mm256_castps256_ps128(e)));
    s1 = _mm256_add_pd(s1, _mm256_cvtps_pd(_mm256_extractf128_ps(e, 1)));
  }
  if (n8 < n) {
    const __m256 e = _mm256_and_ps(exp_block(_mm256_maskload_ps(x + n8, tail)),
                                   _mm256_castsi256_ps(tail));
    _mm256_maskstore_ps(x + n8, tail, e);
    s0 = _mm256_add_pd(s0, _mm256_cvtps_pd(_mm256_castps256_ps128(e)));
    s1 = _mm256_add_pd(s1, _mm256_cvtps_pd(_mm256_extractf128_ps(e, 1)));
  }
  const __m256 inv = _mm256_set1_ps(static_cast<float>(1.0 / HSum(_mm256_add_pd(s0, s1))));
  for (int64_t i = 0; i < n8; i += 8) _mm256_storeu_ps(x + i, _mm256_mul_ps(_mm256_loadu_ps(x + i), inv));
  if (n8 < n) _mm256_maskstore_ps(x + n8, tail, _mm256_mul_ps(_mm256_maskload_ps(x + n8, tail), inv));
}

inline __m256 SiluMul8(__m256 g, __m256 u) {
  const __m256 e = Exp(_mm256_sub_ps(_mm256_setzero_ps(), g));
  return _mm256_mul_ps(_mm256_div_ps(g, _mm256_add_ps(_mm256_set1_ps(1.0f), e)), u);
}

void SiluMul(float* gate, const float* up, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    _mm256_storeu_ps(gate + i, SiluMul8(_mm256_loadu_ps(gate + i), _mm256_loadu_ps(up + i)));
  if (i < n) {
    const __m256i m = TailMask(n - i);
    _mm256_maskstore_ps(gate + i, m, SiluMul8(_mm256_maskload_ps(gate + i, m), _mm256_maskload_ps(up + i, m)));
  }
}

void Add(float* y, const float* x, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    _mm256_storeu_ps(y + i, _mm256_add_ps(_mm256_loadu_ps(y + i), _mm256_loadu_ps(x + i)));
  for (; i < n; ++i) y[i] += x[i];
}

inline __m256 LoadHalf8(const uint16_t* p) {
  return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
}

// Same algorithm as ref::Attention (llama.cpp's CPU flash attention), 8 lanes at a time and
// scalar for the tail of an odd head dimension.
inline __m256 RoundF16(__m256 x) {
  return _mm256_cvtph_ps(_mm256_cvtps_ph(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
}
inline float RoundF16(float x) { return fp16_to_f32(f32_to_fp16(x)); }

void Attention(const float* q, const uint16_t* k, const uint16_t* v, int64_t n_kv,
               int64_t kv_stride, int n_heads, int n_kv_heads, int head_dim, float scale,
               float* out, float* scratch) {
  (void)scratch;
  const int group = n_heads / n_kv_heads;
  const int hd8 = head_dim / 8 * 8;
  alignas(32) float acc[kMaxHeadDim];
  alignas(32) float q16[kMaxHeadDim];
  for (int h = 0; h < n_heads; ++h) {
    const int64_t col = static_cast<int64_t>(h / group) * head_dim;
    const float* qh = q + static_cast<int64_t>(h) * head_dim;
    for (int d = 0; d < head_dim; ++d) {
      q16[d] = RoundF16(qh[d]);
      acc[d] = 0.0f;
    }
    float mx = -INFINITY, sum = 0.0f;
    for (int64_t j = 0; j < n_kv; ++j) {
      const uint16_t* kj = k + j * kv_stride + col;
      __m256 a = _mm256_setzero_ps();
      int d = 0;
      for (; d < hd8; d += 8) a = _mm256_fmadd_ps(_mm256_load_ps(q16 + d), LoadHalf8(kj + d), a);
      float dot = HSum(a);
      for (; d < head_dim; ++d) dot += q16[d] * fp16_to_f32(kj[d]);
      const float s = dot * scale;
      float ms = 1.0f, vs = 1.0f;
      if (s > mx) {
        ms = std::exp(mx - s);
        mx = s;
        const __m256 vms = _mm256_set1_ps(ms);
        for (d = 0; d < hd8; d += 8)
          _mm256_store_ps(acc + d, RoundF16(_mm256_mul_ps(_mm256_load_ps(acc + d), vms)));
        for (; d < head_dim; ++d) acc[d] = RoundF16(acc[d] * ms);
      } else {
        vs = std::exp(s - mx);
      }
      const uint16_t* vj = v + j * kv_stride + col;
      const __m256 vvs = _mm256_set1_ps(vs);
      for (d = 0; d < hd8; d += 8)
        _mm256_store_ps(acc + d, RoundF16(_mm256_fmadd_ps(LoadHalf8(vj + d), vvs, _mm256_load_ps(acc + d))));
      for (; d < head_dim; ++d) acc[d] = RoundF16(std::fma(fp16_to_f32(vj[d]), vs, acc[d]));
      sum = sum * ms + vs;
    }
    const float inv = sum == 0.0f ? 0.0f : 1.0f / sum;
    float* oh = out + static_cast<int64_t>(h) * head_dim;
    for (int d = 0; d < head_dim; ++d) oh[d] = acc[d] * inv;
  }
}

}  // namespace
}  // namespace avx2

namespace internal {

const IsaKernels& Avx2Kernels() {
  static const IsaKernels k = {
      "avx2", avx2::kTypes, static_cast<int>(std::size(avx2::kTypes)), avx2::RmsNorm, avx2::Softmax,
      avx2::SiluMul, avx2::Add, avx2::Attention,
  };
  return k;
}

}  // namespace internal
}  // namespace strata::kernels
