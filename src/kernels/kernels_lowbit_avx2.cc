// AVX2 versions of the 4/5/6-bit weight dot products (scalar twins and their orders:
// kernels_lowbit_ref.cc). The integer parts are exact (unsigned levels times signed int8 via
// vpmaddubsw, whose pair sums stay far below the int16 limit for these level ranges, then
// vpmaddwd with the sub-block scale), so only the float steps have to follow the twin; they do,
// one for one. Compiled with -mavx2 -mfma -mf16c -ffp-contract=off; called only on CPUs with
// those features. Decode streams each weight row once, so the loops load every block byte
// exactly once and keep per-block work to a few shuffles.
#include <immintrin.h>

#include <cmath>
#include <cstring>

#include "base/fp16.h"
#include "kernels/kernels_impl.h"
#include "kernels/x86_reduce.h"

namespace strata::kernels::internal::lowbit_avx2 {
namespace {

using x86::Reduce8;

inline int32_t HsumI32(__m256i v) {
  __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
  s = _mm_add_epi32(s, _mm_unpackhi_epi64(s, s));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 1));
  return _mm_cvtsi128_si32(s);
}

// int32 lane l = scale * sum of u[4l..4l+3] * s[4l..4l+3] (u unsigned, s signed bytes).
inline __m256i ScaledDot4(__m256i u, __m256i s, __m256i scale16) {
  return _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), scale16);
}

inline __m256i Load256(const void* p) { return _mm256_loadu_si256(static_cast<const __m256i*>(p)); }

inline float Fp16(uint16_t h) { return _cvtsh_ss(h); }

// Elements 0..31 of a Q4_0 block as signed bytes in [-8, 7].
inline __m256i Q4_0Levels(const BlockQ4_0& b) {
  const __m128i raw = _mm_loadu_si128(reinterpret_cast<const __m128i*>(b.qs));
  const __m256i both = _mm256_set_m128i(_mm_srli_epi16(raw, 4), raw);
  return _mm256_sub_epi8(_mm256_and_si256(both, _mm256_set1_epi8(0xF)), _mm256_set1_epi8(8));
}

// int32 lanes of 4 products of a Q4_0 block with a Q8_0 block (signed x signed via signs).
inline __m256i Q4_0Lanes(const BlockQ4_0& a, const BlockQ8_0& b) {
  const __m256i w = Q4_0Levels(a);
  const __m256i x = Load256(b.qs);
  return ScaledDot4(_mm256_sign_epi8(w, w), _mm256_sign_epi8(x, w), _mm256_set1_epi16(1));
}

// The 8 scales (bytes 0..7) and 8 mins (bytes 8..15) of a Q4_K / Q5_K block, unpacked from
// their 12-byte 6-bit packing with 32-bit masks (same result as UnpackScaleMinK4).
struct Scales8 {
  union {
    uint32_t u[4];
    uint8_t b[16];
  };
  int sc(int j) const { return b[j]; }
  int m(int j) const { return b[8 + j]; }
};

inline void UnpackScales(const uint8_t* packed, Scales8* s) {
  uint32_t w[3];
  std::memcpy(w, packed, 12);
  // w[0]: low 6 bits = scales 0..3, top 2 bits = high bits of scales 4..7; w[1] likewise for
  // the mins; w[2]: low nibbles = low bits of scales 4..7, high nibbles = of mins 4..7.
  s->u[0] = w[0] & 0x3f3f3f3fu;
  s->u[1] = (w[2] & 0x0f0f0f0fu) | (((w[0] >> 6) & 0x03030303u) << 4);
  s->u[2] = w[1] & 0x3f3f3f3fu;
  s->u[3] = ((w[2] >> 4) & 0x0f0f0f0fu) | (((w[1] >> 6) & 0x03030303u) << 4);
}

// Per 32-element sub-block pair c of a Q4_K / Q5_K super-block: the int32 lanes of
// sc[2c] * (levels . x) over elements 64c..64c+31 plus sc[2c+1] * the same over 64c+32..+63.
template <bool kFiveBit>
inline __m256i KPairLanes(const uint8_t* qs, const uint8_t* qh, const int8_t* x, int c,
                          const Scales8& s) {
  const __m256i m4 = _mm256_set1_epi8(0xF);
  const __m256i bits = Load256(qs + 32 * c);
  __m256i lo = _mm256_and_si256(bits, m4);
  __m256i hi = _mm256_and_si256(_mm256_srli_epi16(bits, 4), m4);
  if constexpr (kFiveBit) {
    const __m256i h = Load256(qh);
    const __m256i one = _mm256_set1_epi8(1);
    lo = _mm256_or_si256(lo,
                         _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(h, 2 * c), one), 4));
    hi = _mm256_or_si256(
        hi, _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(h, 2 * c + 1), one), 4));
  }
  const __m256i pl =
      ScaledDot4(lo, Load256(x + 64 * c), _mm256_set1_epi16(static_cast<int16_t>(s.sc(2 * c))));
  const __m256i ph = ScaledDot4(hi, Load256(x + 64 * c + 32),
                                _mm256_set1_epi16(static_cast<int16_t>(s.sc(2 * c + 1))));
  return _mm256_add_epi32(pl, ph);
}

// Activation sums per 32 elements (B[0..7], int16: at most 32 * 127 in magnitude).
inline __m128i SubBlockSums(const BlockQ8_K& x) {
  const __m128i lo = _mm_loadu_si128(reinterpret_cast<const __m128i*>(x.bsums));
  const __m128i hi = _mm_loadu_si128(reinterpret_cast<const __m128i*>(x.bsums + 8));
  return _mm_hadd_epi16(lo, hi);
}

// The mins as 8 int16 lanes.
inline __m128i Mins16(const Scales8& s) {
  return _mm_cvtepu8_epi16(_mm_cvtsi64_si128(static_cast<long long>(
      static_cast<uint64_t>(s.u[2]) | (static_cast<uint64_t>(s.u[3]) << 32))));
}

// m[2p] * B[2p] + m[2p+1] * B[2p+1] for p = 0..3.
inline __m128i KMinPairs(const Scales8& s, const BlockQ8_K& x) {
  return _mm_madd_epi16(Mins16(s), SubBlockSums(x));
}

template <bool kFiveBit, class Block>
float DotKPlain(int64_t n, const void* w, const void* xv) {
  const Block* a = static_cast<const Block*>(w);
  const BlockQ8_K* b = static_cast<const BlockQ8_K*>(xv);
  __m256 acc = _mm256_setzero_ps();
  __m128 accm = _mm_setzero_ps();
  float summs = 0.0f;
  Scales8 s;
  for (int64_t i = 0; i < n / kQK_K; ++i) {
    const float d = b[i].d * Fp16(a[i].d);
    const float dmin = -b[i].d * Fp16(a[i].dmin);
    UnpackScales(a[i].scales, &s);
    const __m128i pairs = KMinPairs(s, b[i]);
    if constexpr (kFiveBit) {
      int32_t p[4];
      _mm_storeu_si128(reinterpret_cast<__m128i*>(p), pairs);
      summs = std::fma(dmin, static_cast<float>(p[0] + p[1] + p[2] + p[3]), summs);
    } else {
      accm = _mm_fmadd_ps(_mm_set1_ps(dmin), _mm_cvtepi32_ps(pairs), accm);
    }
    const uint8_t* qh = nullptr;
    if constexpr (kFiveBit) qh = a[i].qh;
    __m256i sumi = _mm256_setzero_si256();
#pragma GCC unroll 4  // constant shift counts in KPairLanes
    for (int c = 0; c < 4; ++c)
      sumi = _mm256_add_epi32(sumi, KPairLanes<kFiveBit>(a[i].qs, qh, b[i].qs, c, s));
    acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi), acc);
  }
  if constexpr (kFiveBit) {
    return Reduce8(acc) + summs;
  } else {
    float m[4];
    _mm_storeu_ps(m, accm);
    return Reduce8(acc) + ((m[0] + m[2]) + (m[1] + m[3]));
  }
}

template <int kGroup>  // sub-blocks per float step: 8 (gemv) or 2 (gemm)
float DotQ4_KRepack(int64_t n, const void* w, const void* xv) {
  const BlockQ4_K* a = static_cast<const BlockQ4_K*>(w);
  const BlockQ8_K* b = static_cast<const BlockQ8_K*>(xv);
  float acc = 0.0f, accm = 0.0f;
  Scales8 s;
  for (int64_t i = 0; i < n / kQK_K; ++i) {
    UnpackScales(a[i].scales, &s);
    const float d = Fp16(a[i].d) * b[i].d;
    const float dm = Fp16(a[i].dmin) * b[i].d;
    int32_t pairs[4];
    _mm_storeu_si128(reinterpret_cast<__m128i*>(pairs), KMinPairs(s, b[i]));
    if constexpr (kGroup == 8) {
      __m256i sumi = _mm256_setzero_si256();
      for (int c = 0; c < 4; ++c)
        sumi = _mm256_add_epi32(sumi, KPairLanes<false>(a[i].qs, nullptr, b[i].qs, c, s));
      const int32_t sm = pairs[0] + pairs[1] + pairs[2] + pairs[3];
      acc = std::fma(static_cast<float>(HsumI32(sumi)), d, acc);
      accm = std::fma(static_cast<float>(sm), dm, accm);
    } else {
      static_assert(kGroup == 2, "gemv or gemm grouping");
      for (int c = 0; c < 4; ++c) {
        const int32_t si = HsumI32(KPairLanes<false>(a[i].qs, nullptr, b[i].qs, c, s));
        const int32_t sm = pairs[c];
        acc = std::fma(static_cast<float>(si), d, acc);
        accm = std::fma(static_cast<float>(sm), dm, accm);
      }
    }
  }
  return acc - accm;
}

}  // namespace

float DotQ4_0Plain(int64_t n, const void* w, const void* x) {
  const BlockQ4_0* a = static_cast<const BlockQ4_0*>(w);
  const BlockQ8_0* b = static_cast<const BlockQ8_0*>(x);
  __m256 acc = _mm256_setzero_ps();
  for (int64_t i = 0; i < n / 32; ++i) {
    const __m256 d = _mm256_set1_ps(Fp16(a[i].d) * Fp16(b[i].d));
    acc = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(Q4_0Lanes(a[i], b[i])), acc);
  }
  return Reduce8(acc);
}

// The repacked Q4_0 order for NR weight rows x NX tokens (out[t * NR + r]). Each output is a
// sequential chain of one fma per block, so a single row is bound by the fma latency; the
// chains of several rows / tokens run side by side.
struct Q4_0RepackDot {
  template <int NR, int NX>
  static void Run(int64_t n, const uint8_t* w, size_t ws, const uint8_t* x, size_t xs, float* out) {
    const int64_t nb = n / 32;
    float acc[NR][NX] = {};
    int64_t i = 0;
    for (; i + 4 <= nb; i += 4) {  // four block sums at once, then four chain steps
#pragma GCC unroll 4
      for (int r = 0; r < NR; ++r) {
        const BlockQ4_0* a = reinterpret_cast<const BlockQ4_0*>(w + r * ws) + i;
#pragma GCC unroll 4
        for (int t = 0; t < NX; ++t) {
          const BlockQ8_0* b = reinterpret_cast<const BlockQ8_0*>(x + t * xs) + i;
          const __m256i h01 = _mm256_hadd_epi32(Q4_0Lanes(a[0], b[0]), Q4_0Lanes(a[1], b[1]));
          const __m256i h23 = _mm256_hadd_epi32(Q4_0Lanes(a[2], b[2]), Q4_0Lanes(a[3], b[3]));
          const __m256i h = _mm256_hadd_epi32(h01, h23);
          const __m128 f = _mm_cvtepi32_ps(
              _mm_add_epi32(_mm256_castsi256_si128(h), _mm256_extracti128_si256(h, 1)));
          float fs[4];
          _mm_storeu_ps(fs, f);
#pragma GCC unroll 4
          for (int k = 0; k < 4; ++k)
            acc[r][t] = std::fma(fs[k], Fp16(a[k].d) * Fp16(b[k].d), acc[r][t]);
        }
      }
    }
    for (; i < nb; ++i)
#pragma GCC unroll 4
      for (int r = 0; r < NR; ++r)
#pragma GCC unroll 4
        for (int t = 0; t < NX; ++t) {
          const BlockQ4_0& a = reinterpret_cast<const BlockQ4_0*>(w + r * ws)[i];
          const BlockQ8_0& b = reinterpret_cast<const BlockQ8_0*>(x + t * xs)[i];
          acc[r][t] = std::fma(static_cast<float>(HsumI32(Q4_0Lanes(a, b))), Fp16(a.d) * Fp16(b.d),
                               acc[r][t]);
        }
#pragma GCC unroll 4
    for (int r = 0; r < NR; ++r)
#pragma GCC unroll 4
      for (int t = 0; t < NX; ++t) out[t * NR + r] = acc[r][t];
  }
};

float DotQ4_0Repack(int64_t n, const void* w, const void* x) {
  return VecDotOne<Q4_0RepackDot>(n, w, x);
}

void TileQ4_0Repack(int64_t n, const void* w, size_t ws, int nw, const void* x, size_t xs, int nx,
                    float* y, size_t ys) {
  VecDotTile<Q4_0RepackDot>(n, w, ws, nw, x, xs, nx, y, ys);
}

float DotQ4_KPlain(int64_t n, const void* w, const void* x) {
  return DotKPlain<false, BlockQ4_K>(n, w, x);
}

float DotQ5_KPlain(int64_t n, const void* w, const void* x) {
  return DotKPlain<true, BlockQ5_K>(n, w, x);
}

float DotQ4_KRepackGemv(int64_t n, const void* w, const void* x) {
  return DotQ4_KRepack<8>(n, w, x);
}

float DotQ4_KRepackGemm(int64_t n, const void* w, const void* x) {
  return DotQ4_KRepack<2>(n, w, x);
}

// The repacked Q4_K GEMM order (DotQ4_KRepackGemm) for a tile of up to 4 rows x 4 tokens.
// Each weight pair of sub-blocks is unpacked once and used for all 4 tokens, each token's
// activations once for 2 rows. The per-entry float chains run side by side in the lanes of
// two vectors (lane 4t + r: token t of the vector's pair, row r), with the twin's steps per
// lane: acc = fma(pair sum, dw*dx, acc), accm = fma(min pair sum, dmin*dx, accm) for pairs
// c = 0..3 of every super-block, then acc - accm. The integer sums are exact (and so equal
// the twin's however they are grouped). Rows >= nw and tokens >= nx repeat row / token 0 and
// are discarded, so an entry's value does not depend on its position or on nw, nx.
void TileQ4_KRepackGemm(int64_t n, const void* w, size_t ws, int nw, const void* x, size_t xs,
                        int nx, float* y, size_t ys) {
  const BlockQ4_K* a[4];
  const BlockQ8_K* b[4];
  for (int r = 0; r < 4; ++r)
    a[r] =
        reinterpret_cast<const BlockQ4_K*>(static_cast<const uint8_t*>(w) + (r < nw ? r : 0) * ws);
  for (int t = 0; t < 4; ++t)
    b[t] =
        reinterpret_cast<const BlockQ8_K*>(static_cast<const uint8_t*>(x) + (t < nx ? t : 0) * xs);
  const __m256i m4 = _mm256_set1_epi8(0xF);
  const __m256i halves = _mm256_setr_epi32(0, 0, 0, 0, 4, 4, 4, 4);
  __m256 acc01 = _mm256_setzero_ps(), acc23 = _mm256_setzero_ps();
  __m256 accm01 = _mm256_setzero_ps(), accm23 = _mm256_setzero_ps();
  for (int64_t i = 0; i < n / kQK_K; ++i) {
    Scales8 s[4];
    for (int r = 0; r < 4; ++r) UnpackScales(a[r][i].scales, &s[r]);
    // dw*dx and dmin*dx per lane 4t + r (one rounding, as the twin's product).
    const __m128 wd = _mm_cvtph_ps(_mm_setr_epi16(
        static_cast<int16_t>(a[0][i].d), static_cast<int16_t>(a[1][i].d),
        static_cast<int16_t>(a[2][i].d), static_cast<int16_t>(a[3][i].d), 0, 0, 0, 0));
    const __m128 wm = _mm_cvtph_ps(_mm_setr_epi16(
        static_cast<int16_t>(a[0][i].dmin), static_cast<int16_t>(a[1][i].dmin),
        static_cast<int16_t>(a[2][i].dmin), static_cast<int16_t>(a[3][i].dmin), 0, 0, 0, 0));
    const __m256 xd01 = _mm256_set_m128(_mm_set1_ps(b[1][i].d), _mm_set1_ps(b[0][i].d));
    const __m256 xd23 = _mm256_set_m128(_mm_set1_ps(b[3][i].d), _mm_set1_ps(b[2][i].d));
    const __m256 wd2 = _mm256_set_m128(wd, wd), wm2 = _mm256_set_m128(wm, wm);
    const __m256 d01 = _mm256_mul_ps(wd2, xd01), d23 = _mm256_mul_ps(wd2, xd23);
    const __m256 dm01 = _mm256_mul_ps(wm2, xd01), dm23 = _mm256_mul_ps(wm2, xd23);
    // Mins: 32-bit unit c of row r's Mins16 is (m[2c], m[2c+1]); transposed so that unit r
    // of mt[c] is row r's pair c. Activation pair sums likewise per token (unit c of sb).
    __m128i mt[4];
    {
      const __m128i m0 = Mins16(s[0]), m1 = Mins16(s[1]), m2 = Mins16(s[2]), m3 = Mins16(s[3]);
      const __m128i t01l = _mm_unpacklo_epi32(m0, m1), t01h = _mm_unpackhi_epi32(m0, m1);
      const __m128i t23l = _mm_unpacklo_epi32(m2, m3), t23h = _mm_unpackhi_epi32(m2, m3);
      mt[0] = _mm_unpacklo_epi64(t01l, t23l);
      mt[1] = _mm_unpackhi_epi64(t01l, t23l);
      mt[2] = _mm_unpacklo_epi64(t01h, t23h);
      mt[3] = _mm_unpackhi_epi64(t01h, t23h);
    }
    const __m256i sb01 = _mm256_set_m128i(SubBlockSums(b[1][i]), SubBlockSums(b[0][i]));
    const __m256i sb23 = _mm256_set_m128i(SubBlockSums(b[3][i]), SubBlockSums(b[2][i]));
#pragma GCC unroll 4
    for (int c = 0; c < 4; ++c) {
      // g[t] lane r (low half) + lane 4 + r (high half) = pair c's scaled sum of row r, token t.
      __m256i g[4];
#pragma GCC unroll 2
      for (int half = 0; half < 2; ++half) {
        const int r0 = 2 * half, r1 = r0 + 1;
        const __m256i bits0 = Load256(a[r0][i].qs + 32 * c);
        const __m256i bits1 = Load256(a[r1][i].qs + 32 * c);
        const __m256i lo0 = _mm256_and_si256(bits0, m4);
        const __m256i hi0 = _mm256_and_si256(_mm256_srli_epi16(bits0, 4), m4);
        const __m256i lo1 = _mm256_and_si256(bits1, m4);
        const __m256i hi1 = _mm256_and_si256(_mm256_srli_epi16(bits1, 4), m4);
        const __m256i sl0 = _mm256_set1_epi16(static_cast<int16_t>(s[r0].sc(2 * c)));
        const __m256i sh0 = _mm256_set1_epi16(static_cast<int16_t>(s[r0].sc(2 * c + 1)));
        const __m256i sl1 = _mm256_set1_epi16(static_cast<int16_t>(s[r1].sc(2 * c)));
        const __m256i sh1 = _mm256_set1_epi16(static_cast<int16_t>(s[r1].sc(2 * c + 1)));
#pragma GCC unroll 4
        for (int t = 0; t < 4; ++t) {
          const int8_t* xq = b[t][i].qs + 64 * c;
          const __m256i xl = Load256(xq), xh = Load256(xq + 32);
          const __m256i v0 = _mm256_add_epi32(ScaledDot4(lo0, xl, sl0), ScaledDot4(hi0, xh, sh0));
          const __m256i v1 = _mm256_add_epi32(ScaledDot4(lo1, xl, sl1), ScaledDot4(hi1, xh, sh1));
          const __m256i h = _mm256_hadd_epi32(v0, v1);
          g[t] = half == 0 ? h : _mm256_hadd_epi32(g[t], h);
        }
      }
      const __m256i s01 = _mm256_add_epi32(_mm256_permute2x128_si256(g[0], g[1], 0x20),
                                           _mm256_permute2x128_si256(g[0], g[1], 0x31));
      const __m256i s23 = _mm256_add_epi32(_mm256_permute2x128_si256(g[2], g[3], 0x20),
                                           _mm256_permute2x128_si256(g[2], g[3], 0x31));
      const __m256i idx = _mm256_add_epi32(_mm256_set1_epi32(c), halves);
      const __m256i mc = _mm256_broadcastsi128_si256(mt[c]);
      const __m256i min01 = _mm256_madd_epi16(mc, _mm256_permutevar8x32_epi32(sb01, idx));
      const __m256i min23 = _mm256_madd_epi16(mc, _mm256_permutevar8x32_epi32(sb23, idx));
      acc01 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s01), d01, acc01);
      acc23 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s23), d23, acc23);
      accm01 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(min01), dm01, accm01);
      accm23 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(min23), dm23, accm23);
    }
  }
  float out[16];
  _mm256_storeu_ps(out, _mm256_sub_ps(acc01, accm01));
  _mm256_storeu_ps(out + 8, _mm256_sub_ps(acc23, accm23));
  for (int t = 0; t < nx; ++t)
    for (int r = 0; r < nw; ++r) y[t * ys + r] = out[4 * t + r];
}

namespace {

// The 6-bit levels (0..63) of half h (128 elements) of a Q6_K block: q[k] = elements
// 128h + 32k .. +31, from the low nibbles (k < 2) or high nibbles of ql and 2 bits of qh.
inline void Q6Levels(const BlockQ6_K& a, int h, __m256i* q) {
  const __m256i m4 = _mm256_set1_epi8(0xF), m3 = _mm256_set1_epi8(3);
  const __m256i l0 = Load256(a.ql + 64 * h);
  const __m256i l1 = Load256(a.ql + 64 * h + 32);
  const __m256i hb = Load256(a.qh + 32 * h);
  q[0] = _mm256_or_si256(_mm256_and_si256(l0, m4), _mm256_slli_epi16(_mm256_and_si256(hb, m3), 4));
  q[1] = _mm256_or_si256(_mm256_and_si256(l1, m4),
                         _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hb, 2), m3), 4));
  q[2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l0, 4), m4),
                         _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hb, 4), m3), 4));
  q[3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l1, 4), m4),
                         _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hb, 6), m3), 4));
}

}  // namespace

float DotQ6_KPlain(int64_t n, const void* w, const void* xv) {
  const BlockQ6_K* a = static_cast<const BlockQ6_K*>(w);
  const BlockQ8_K* b = static_cast<const BlockQ8_K*>(xv);
  __m256 acc = _mm256_setzero_ps();
  for (int64_t i = 0; i < n / kQK_K; ++i) {
    const float d = b[i].d * Fp16(a[i].d);
    const int8_t* sc = a[i].scales;
    const int8_t* x = b[i].qs;
    // The 16 scales as int16; pair p = (sc[2p], sc[2p+1]) is 32-bit unit p.
    const __m256i sc16 =
        _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(sc)));
    const __m256i spread = _mm256_setr_epi8(0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1,  //
                                            2, 3, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3);
    __m256i sumi = _mm256_setzero_si256();
    for (int h = 0; h < 2; ++h) {
      __m256i q[4];
      Q6Levels(a[i], h, q);
      for (int k = 0; k < 4; ++k) {
        // int16 lanes 0..7: sc[8h + 2k], lanes 8..15: sc[8h + 2k + 1].
        const __m256i scale = _mm256_shuffle_epi8(
            _mm256_permutevar8x32_epi32(sc16, _mm256_set1_epi32(4 * h + k)), spread);
        sumi = _mm256_add_epi32(sumi, ScaledDot4(q[k], Load256(x + 128 * h + 32 * k), scale));
      }
    }
    const __m256i bs = Load256(b[i].bsums);
    sumi = _mm256_sub_epi32(sumi, _mm256_slli_epi32(_mm256_madd_epi16(bs, sc16), 5));
    acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi), acc);
  }
  return Reduce8(acc);
}

// DotQ6_KPlain for a tile of weight rows x up to 4 tokens: each row's block is unpacked once
// and used for the 4 tokens, each entry keeping its own 8 float lanes with the same steps as
// DotQ6_KPlain (exact integer lane sums, lane = fma(dx*dw, sum, lane), Reduce8). Tokens >= nx
// repeat token 0 and are discarded.
void TileQ6_K(int64_t n, const void* w, size_t ws, int nw, const void* xv, size_t xs, int nx,
              float* y, size_t ys) {
  const BlockQ8_K* b[4];
  for (int t = 0; t < 4; ++t)
    b[t] =
        reinterpret_cast<const BlockQ8_K*>(static_cast<const uint8_t*>(xv) + (t < nx ? t : 0) * xs);
  const __m256i spread = _mm256_setr_epi8(0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1,  //
                                          2, 3, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3);
  for (int r = 0; r < nw; ++r) {
    const BlockQ6_K* a =
        reinterpret_cast<const BlockQ6_K*>(static_cast<const uint8_t*>(w) + r * ws);
    __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(),
                     _mm256_setzero_ps()};
    for (int64_t i = 0; i < n / kQK_K; ++i) {
      const float dw = Fp16(a[i].d);
      const __m256i sc16 =
          _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(a[i].scales)));
      __m256i sumi[4] = {_mm256_setzero_si256(), _mm256_setzero_si256(), _mm256_setzero_si256(),
                         _mm256_setzero_si256()};
#pragma GCC unroll 2
      for (int h = 0; h < 2; ++h) {
        __m256i q[4];
        Q6Levels(a[i], h, q);
#pragma GCC unroll 4
        for (int k = 0; k < 4; ++k) {
          const __m256i scale = _mm256_shuffle_epi8(
              _mm256_permutevar8x32_epi32(sc16, _mm256_set1_epi32(4 * h + k)), spread);
#pragma GCC unroll 4
          for (int t = 0; t < 4; ++t)
            sumi[t] = _mm256_add_epi32(
                sumi[t], ScaledDot4(q[k], Load256(b[t][i].qs + 128 * h + 32 * k), scale));
        }
      }
#pragma GCC unroll 4
      for (int t = 0; t < 4; ++t) {
        const __m256i bs = Load256(b[t][i].bsums);
        const __m256i v =
            _mm256_sub_epi32(sumi[t], _mm256_slli_epi32(_mm256_madd_epi16(bs, sc16), 5));
        acc[t] = _mm256_fmadd_ps(_mm256_set1_ps(b[t][i].d * dw), _mm256_cvtepi32_ps(v), acc[t]);
      }
    }
    for (int t = 0; t < nx; ++t) y[t * ys + r] = Reduce8(acc[t]);
  }
}

}  // namespace strata::kernels::internal::lowbit_avx2
