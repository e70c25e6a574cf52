// AVX2 + FMA + F16C kernels. Compiled with -mavx2 -mfma -mf16c -ffp-contract=off; only
// reached after the dispatcher has checked the CPU.
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <iterator>
#include <limits>

#include "base/fp16.h"
#include "kernels/kernels.h"
#include "kernels/kernels_impl.h"
#include "kernels/x86_reduce.h"

namespace strata::kernels {
namespace avx2 {
namespace {

using internal::TypeKernels;

constexpr int kQK = 32;

using x86::Reduce8;

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
  auto* out = static_cast<uint8_t*>(dst);  // blocks need not be aligned (KV rows)
  const __m256 sign = _mm256_set1_ps(-0.0f);
  const __m256i perm = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
  for (int64_t b = 0; b < n / kQK; ++b) {
    const float* xb = x + b * kQK;
    BlockQ8_0 blk;
    __m256 v[4];
    for (int k = 0; k < 4; ++k) v[k] = _mm256_loadu_ps(xb + 8 * k);
    const __m256 m =
        _mm256_max_ps(_mm256_max_ps(_mm256_andnot_ps(sign, v[0]), _mm256_andnot_ps(sign, v[1])),
                      _mm256_max_ps(_mm256_andnot_ps(sign, v[2]), _mm256_andnot_ps(sign, v[3])));
    const float amax = HMax(m);
    const float d = amax / 127.0f;
    const float id = amax != 0.0f ? 127.0f / amax : 0.0f;
    blk.d = f32_to_fp16(d);
    const __m256 mul = _mm256_set1_ps(id);
    __m256i q[4];
    for (int k = 0; k < 4; ++k)
      q[k] = _mm256_cvtps_epi32(
          _mm256_round_ps(_mm256_mul_ps(v[k], mul), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
    const __m256i p01 = _mm256_packs_epi32(q[0], q[1]);
    const __m256i p23 = _mm256_packs_epi32(q[2], q[3]);
    const __m256i p = _mm256_permutevar8x32_epi32(_mm256_packs_epi16(p01, p23), perm);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(blk.qs), p);
    std::memcpy(out + b * sizeof(blk), &blk, sizeof(blk));
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
  static float One(const void* p, int64_t i) {
    return fp16_to_f32(static_cast<const uint16_t*>(p)[i]);
  }
};

struct LoadBF16 {
  static __m256 Load(const void* p, int64_t i) {
    const __m128i h =
        _mm_loadu_si128(reinterpret_cast<const __m128i*>(static_cast<const uint16_t*>(p) + i));
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
  }
  static float One(const void* p, int64_t i) {
    return bf16_to_f32(static_cast<const uint16_t*>(p)[i]);
  }
};

// The accumulation orders are llama.cpp's (see kernels_ref.cc): F32/F16/BF16 use 16 lanes
// per (row, token), held here as two 8-lane halves, and the Reduce16 tree; Q8_0 uses 8 lanes
// per block and Reduce8 (x86_reduce.h).
inline float Reduce16(__m256 lo, __m256 hi) { return Reduce8(_mm256_add_ps(hi, lo)); }

// Finishes 16 lanes with a scalar tail [i, n) and reduces them like the scalar twin.
template <class L>
float FinishLanes(__m256 lo, __m256 hi, const void* w, const void* x, int64_t i, int64_t n) {
  if (i >= n) return Reduce16(lo, hi);
  alignas(32) float lanes[16];
  _mm256_store_ps(lanes, lo);
  _mm256_store_ps(lanes + 8, hi);
  for (int64_t j = i; j < n; ++j) lanes[j - i] = std::fma(L::One(w, j), L::One(x, j), lanes[j - i]);
  return Reduce16(_mm256_load_ps(lanes), _mm256_load_ps(lanes + 8));
}

// out[t] = dot(w, x + t*xs) for t < NX, F32/F16 weights: fma over 16-element chunks.
template <class L, int NX>
void DotFloat(int64_t n, const void* w, const uint8_t* x, size_t xs, float* out) {
  __m256 lo[NX], hi[NX];
#pragma GCC unroll 4
  for (int t = 0; t < NX; ++t) lo[t] = hi[t] = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m256 w0 = L::Load(w, i), w1 = L::Load(w, i + 8);
#pragma GCC unroll 4
    for (int t = 0; t < NX; ++t) {
      lo[t] = _mm256_fmadd_ps(w0, L::Load(x + t * xs, i), lo[t]);
      hi[t] = _mm256_fmadd_ps(w1, L::Load(x + t * xs, i + 8), hi[t]);
    }
  }
#pragma GCC unroll 4
  for (int t = 0; t < NX; ++t) out[t] = FinishLanes<L>(lo[t], hi[t], w, x + t * xs, i, n);
}

// BF16: as vdpbf16ps, lane j of a 32-element chunk adds the odd product, then the even one.
// bf16 x bf16 products are exact in f32, so fma equals the instruction's multiply-add.
template <int NX>
void DotBF16(int64_t n, const void* w, const uint8_t* x, size_t xs, float* out) {
  const __m256i hi_mask = _mm256_set1_epi32(static_cast<int>(0xFFFF0000u));
  __m256 lo[NX], hi[NX];
#pragma GCC unroll 4
  for (int t = 0; t < NX; ++t) lo[t] = hi[t] = _mm256_setzero_ps();
  auto odd = [&](__m256i v) { return _mm256_castsi256_ps(_mm256_and_si256(v, hi_mask)); };
  auto even = [&](__m256i v) { return _mm256_castsi256_ps(_mm256_slli_epi32(v, 16)); };
  int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    const uint16_t* wp = static_cast<const uint16_t*>(w) + i;
    const __m256i w0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(wp));
    const __m256i w1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(wp + 16));
#pragma GCC unroll 4
    for (int t = 0; t < NX; ++t) {
      const uint16_t* xp = reinterpret_cast<const uint16_t*>(x + t * xs) + i;
      const __m256i x0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xp));
      const __m256i x1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xp + 16));
      lo[t] = _mm256_fmadd_ps(even(w0), even(x0), _mm256_fmadd_ps(odd(w0), odd(x0), lo[t]));
      hi[t] = _mm256_fmadd_ps(even(w1), even(x1), _mm256_fmadd_ps(odd(w1), odd(x1), hi[t]));
    }
  }
#pragma GCC unroll 4
  for (int t = 0; t < NX; ++t) {
    if (i >= n) {
      out[t] = Reduce16(lo[t], hi[t]);
      continue;
    }
    alignas(32) float lanes[16];
    _mm256_store_ps(lanes, lo[t]);
    _mm256_store_ps(lanes + 8, hi[t]);
    const void* xt = x + t * xs;
    auto at = [&](const void* p, int64_t e) { return e < n ? LoadBF16::One(p, e) : 0.0f; };
    for (int j = 0; j < 16; ++j) {
      const int64_t e = i + 2 * j;
      lanes[j] = lanes[j] + at(w, e + 1) * at(xt, e + 1);
      lanes[j] = lanes[j] + at(w, e) * at(xt, e);
    }
    out[t] = Reduce16(_mm256_load_ps(lanes), _mm256_load_ps(lanes + 8));
  }
}

// Single-token orders (see kernels_ref.cc), 16-lane accumulators held as 8-lane halves.
template <class L>
inline void Fold4x16(int64_t np, const void* w, const void* x, __m256* lo_out, __m256* hi_out) {
  __m256 lo[4], hi[4];
  for (int j = 0; j < 4; ++j) lo[j] = hi[j] = _mm256_setzero_ps();
  for (int64_t i = 0; i < np; i += 64) {
    for (int j = 0; j < 4; ++j) {
      lo[j] = _mm256_fmadd_ps(L::Load(w, i + 16 * j), L::Load(x, i + 16 * j), lo[j]);
      hi[j] = _mm256_fmadd_ps(L::Load(w, i + 16 * j + 8), L::Load(x, i + 16 * j + 8), hi[j]);
    }
  }
  *lo_out = _mm256_add_ps(_mm256_add_ps(lo[0], lo[2]), _mm256_add_ps(lo[1], lo[3]));
  *hi_out = _mm256_add_ps(_mm256_add_ps(hi[0], hi[2]), _mm256_add_ps(hi[1], hi[3]));
}

float DotF32Vec(int64_t n, const void* w, const void* x) {
  const int64_t np = n & ~int64_t{63};
  __m256 lo, hi;
  Fold4x16<LoadF32>(np, w, x, &lo, &hi);
  float sum = Reduce16(lo, hi);
  for (int64_t i = np; i < n; ++i) sum = std::fma(LoadF32::One(w, i), LoadF32::One(x, i), sum);
  return sum;
}

float DotF16Vec(int64_t n, const void* w, const void* x) {
  const int64_t np = n & ~int64_t{63};
  __m256 lo, hi;
  Fold4x16<LoadF16>(np, w, x, &lo, &hi);
  double sum = Reduce16(lo, hi);
  for (int64_t i = np; i < n; ++i)
    sum += static_cast<double>(LoadF16::One(w, i) * LoadF16::One(x, i));
  return static_cast<float>(sum);
}

float DotBF16Vec(int64_t n, const void* w, const void* x) {
  const __m256i hi_mask = _mm256_set1_epi32(static_cast<int>(0xFFFF0000u));
  auto odd = [&](__m256i v) { return _mm256_castsi256_ps(_mm256_and_si256(v, hi_mask)); };
  auto even = [&](__m256i v) { return _mm256_castsi256_ps(_mm256_slli_epi32(v, 16)); };
  const uint16_t* a = static_cast<const uint16_t*>(w);
  const uint16_t* b = static_cast<const uint16_t*>(x);
  __m256 c[2][2];  // [accumulator][half]
  for (auto& ch : c) ch[0] = ch[1] = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 64 <= n; i += 64) {
    for (int h = 0; h < 2; ++h) {
      for (int q = 0; q < 2; ++q) {
        const int64_t o = i + 32 * h + 16 * q;
        const __m256i wv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a + o));
        const __m256i xv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + o));
        c[h][q] = _mm256_fmadd_ps(even(wv), even(xv), _mm256_fmadd_ps(odd(wv), odd(xv), c[h][q]));
      }
    }
  }
  double sum = Reduce16(c[0][0], c[0][1]);
  sum += Reduce16(c[1][0], c[1][1]);
  for (; i < n; ++i) sum += static_cast<double>(LoadBF16::One(w, i) * LoadBF16::One(x, i));
  return static_cast<float>(sum);
}

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

// Q8_0 x Q8_0 for NR weight rows x NX tokens: per block, |w| (unsigned) times x with w's sign
// (signed) through maddubs, pairs summed to int32, scaled by dw*dx and accumulated in f32 lanes.
struct Q8Dot {
  template <int NR, int NX>
  static void Run(int64_t n, const uint8_t* w, size_t ws, const uint8_t* x, size_t xs, float* out) {
    const int64_t nb = n / kQK;
    const __m256i ones = _mm256_set1_epi16(1);
    // Fully unrolled (the pragmas): with loops left, acc[][] would live in memory.
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
          const __m256i sx = _mm256_sign_epi8(xv[t], wv);
          const __m256i p = _mm256_madd_epi16(_mm256_maddubs_epi16(aw, sx), ones);
          acc[r][t] = _mm256_fmadd_ps(_mm256_set1_ps(dw * dx[t]), _mm256_cvtepi32_ps(p), acc[r][t]);
        }
      }
    }
#pragma GCC unroll 4
    for (int r = 0; r < NR; ++r)
#pragma GCC unroll 4
      for (int t = 0; t < NX; ++t) out[t * NR + r] = Reduce8(acc[r][t]);
  }
};

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

using internal::VecDotOne;
using internal::VecDotTile;

const TypeKernels kTypes[] = {
    {DType::F32, DType::F32, nullptr, DotF32Vec, VecDotTile<FloatDot<LoadF32>>},
    {DType::F16, DType::F16, QuantizeF16, DotF16Vec, VecDotTile<FloatDot<LoadF16>>},
    {DType::BF16, DType::BF16, QuantizeBF16, DotBF16Vec, VecDotTile<BF16Dot>},
    {DType::Q8_0, DType::Q8_0, QuantizeQ8_0, VecDotOne<Q8Dot>, VecDotTile<Q8Dot>},
    STRATA_LOWBIT_SIMD_TYPES(QuantizeQ8_0),
};

// ---- row kernels -------------------------------------------------------------------------

void RmsNorm(const float* x, const float* w, float* y, int64_t n, float eps) {
  // Sum of squares in double, sequentially like llama.cpp's rms_norm, so that the rounded mean
  // is the same bit for bit (a lane-split double sum differs in rare last-bit cases).
  double sum = 0.0;
  for (int64_t i = 0; i < n; ++i) sum += static_cast<double>(x[i] * x[i]);
  const float mean = static_cast<float>(sum / static_cast<double>(n));
  const float scale = 1.0f / std::sqrt(mean + eps);
  const __m256 sv = _mm256_set1_ps(scale);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    _mm256_storeu_ps(
        y + i, _mm256_mul_ps(_mm256_mul_ps(_mm256_loadu_ps(x + i), sv), _mm256_loadu_ps(w + i)));
  for (; i < n; ++i) y[i] = (x[i] * scale) * w[i];
}

void Softmax(float* x, int64_t n) {
  if (n <= 0) return;
  const int64_t n8 = n / 8 * 8;
  const __m256i tail = TailMask(n - n8);
  const __m256 ninf = _mm256_set1_ps(-std::numeric_limits<float>::infinity());
  __m256 mv = ninf;
  for (int64_t i = 0; i < n8; i += 8) mv = _mm256_max_ps(mv, _mm256_loadu_ps(x + i));
  if (n8 < n)
    mv = _mm256_max_ps(
        mv, _mm256_blendv_ps(ninf, _mm256_maskload_ps(x + n8, tail), _mm256_castsi256_ps(tail)));
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
    const __m256 e =
        _mm256_and_ps(exp_block(_mm256_maskload_ps(x + n8, tail)), _mm256_castsi256_ps(tail));
    _mm256_maskstore_ps(x + n8, tail, e);
    s0 = _mm256_add_pd(s0, _mm256_cvtps_pd(_mm256_castps256_ps128(e)));
    s1 = _mm256_add_pd(s1, _mm256_cvtps_pd(_mm256_extractf128_ps(e, 1)));
  }
  const __m256 inv = _mm256_set1_ps(static_cast<float>(1.0 / HSum(_mm256_add_pd(s0, s1))));
  for (int64_t i = 0; i < n8; i += 8)
    _mm256_storeu_ps(x + i, _mm256_mul_ps(_mm256_loadu_ps(x + i), inv));
  if (n8 < n)
    _mm256_maskstore_ps(x + n8, tail, _mm256_mul_ps(_mm256_maskload_ps(x + n8, tail), inv));
}

// ref::ExpPoly, 8 lanes; 2^n is applied as two exact power-of-two factors so that the one
// rounding matches a single scaling.
inline __m256 ExpPoly8(__m256 x) {
  const __m256 r = _mm256_set1_ps(0x1.8p23f);
  const __m256 nn = _mm256_sub_ps(_mm256_fmadd_ps(x, _mm256_set1_ps(0x1.715476p+0f), r), r);
  const __m256 b = _mm256_fnmadd_ps(nn, _mm256_set1_ps(0x1.7f7d1cp-20f),
                                    _mm256_fnmadd_ps(nn, _mm256_set1_ps(0x1.62e4p-1f), x));
  const __m256 u = _mm256_mul_ps(b, b);
  const __m256 j = _mm256_fmadd_ps(
      _mm256_fmadd_ps(
          _mm256_fmadd_ps(_mm256_set1_ps(0x1.0e4020p-7f), b, _mm256_set1_ps(0x1.573e2ep-5f)), u,
          _mm256_fmadd_ps(_mm256_set1_ps(0x1.555e66p-3f), b, _mm256_set1_ps(0x1.fffdb6p-2f))),
      u, _mm256_fmadd_ps(_mm256_set1_ps(0x1.ffffecp-1f), b, _mm256_set1_ps(1.0f)));
  const __m256 absn = _mm256_andnot_ps(_mm256_set1_ps(-0.0f), nn);
  const __m256 big = _mm256_cmp_ps(absn, _mm256_set1_ps(192.0f), _CMP_GT_OQ);
  const __m256i ni = _mm256_cvtps_epi32(
      _mm256_min_ps(_mm256_max_ps(nn, _mm256_set1_ps(-192.0f)), _mm256_set1_ps(192.0f)));
  const __m256i n1 = _mm256_srai_epi32(ni, 1);
  const __m256i n2 = _mm256_sub_epi32(ni, n1);
  auto pow2 = [](__m256i e) {
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(e, _mm256_set1_epi32(127)), 23));
  };
  const __m256 res = _mm256_mul_ps(_mm256_mul_ps(j, pow2(n1)), pow2(n2));
  const __m256 sat = _mm256_blendv_ps(_mm256_set1_ps(INFINITY), _mm256_setzero_ps(),
                                      _mm256_cmp_ps(nn, _mm256_setzero_ps(), _CMP_LE_OQ));
  return _mm256_blendv_ps(res, sat, big);
}

// Same results as ref::SiluMul: whole groups of 16 with ExpPoly, the tail with libm's exp.
void SiluMul(float* gate, const float* up, int64_t n) {
  int64_t i = 0;
  const int64_t n16 = n / 16 * 16;
  for (; i < n16; i += 8) {
    const __m256 g = _mm256_loadu_ps(gate + i);
    const __m256 e = ExpPoly8(_mm256_sub_ps(_mm256_setzero_ps(), g));
    _mm256_storeu_ps(gate + i,
                     _mm256_mul_ps(_mm256_div_ps(g, _mm256_add_ps(_mm256_set1_ps(1.0f), e)),
                                   _mm256_loadu_ps(up + i)));
  }
  for (; i < n; ++i) gate[i] = gate[i] / (1.0f + std::exp(-gate[i])) * up[i];
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

// q.k in the order of ref's AttnScoreDot (llama.cpp's f16 dot): four 16-lane accumulators,
// each held as two 8-lane halves.
inline float AttnScoreDot(const uint16_t* k, const float* q16, int n) {
  const int np = n & ~63;
  __m256 lo[4], hi[4];
  for (int j = 0; j < 4; ++j) lo[j] = hi[j] = _mm256_setzero_ps();
  for (int i = 0; i < np; i += 64) {
    for (int j = 0; j < 4; ++j) {
      lo[j] = _mm256_fmadd_ps(LoadHalf8(k + i + 16 * j), _mm256_loadu_ps(q16 + i + 16 * j), lo[j]);
      hi[j] = _mm256_fmadd_ps(LoadHalf8(k + i + 16 * j + 8), _mm256_loadu_ps(q16 + i + 16 * j + 8),
                              hi[j]);
    }
  }
  const __m256 l = _mm256_add_ps(_mm256_add_ps(lo[0], lo[2]), _mm256_add_ps(lo[1], lo[3]));
  const __m256 h = _mm256_add_ps(_mm256_add_ps(hi[0], hi[2]), _mm256_add_ps(hi[1], hi[3]));
  double sum = Reduce16(l, h);
  for (int i = np; i < n; ++i) sum += static_cast<double>(fp16_to_f32(k[i]) * q16[i]);
  return static_cast<float>(sum);
}

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
      const float s = AttnScoreDot(k + j * kv_stride + col, q16, head_dim) * scale;
      int d = 0;
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
        _mm256_store_ps(acc + d,
                        RoundF16(_mm256_fmadd_ps(LoadHalf8(vj + d), vvs, _mm256_load_ps(acc + d))));
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
      "avx2",
      avx2::kTypes,
      static_cast<int>(std::size(avx2::kTypes)),
      avx2::RmsNorm,
      avx2::Softmax,
      avx2::SiluMul,
      avx2::Add,
      avx2::Attention,
      nullptr,  // attention_tiled
      nullptr,  // attention_kv_partial
      nullptr,  // merge_partials
      AccumulateKvRowAvx2,
  };
  return k;
}

}  // namespace internal
}  // namespace strata::kernels
