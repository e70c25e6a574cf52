// AVX-512 versions of llama.cpp's Q6_K x Q8_K dot product order (scalar twin and the order:
// DotQ6_KPlain in kernels_lowbit_ref.cc). Per super-block of 256 elements the twin gives float
// lane l (0..7) the exact integer
//   sum over the 8 chunks of 32 elements c: sc[2c + (l >= 4)] * S(32c + 4l .. 32c + 4l + 3)
//   - 32 * (bsum[2l] * sc[2l] + bsum[2l + 1] * sc[2l + 1])
// (S = sum of level * activation, levels q in [0, 63]) and then lane_l = fma(dx * dw, that,
// lane_l); the result is Reduce8(lanes).
//
// Here one zmm holds 64 consecutive levels (two chunks), so int32 lane j (elements 4j..4j+3 of
// the 64) belongs to twin lane j % 8. Tile (4 tokens): per 64 elements vpmaddubsw (u8 level x
// s8 activation -> int16 pair sums, at most 2 * 63 * 128 in magnitude, no saturation) and
// vpdpwssd with the int16 scale of the pair's 16-element sub-block (every 128-bit lane of that
// scale vector is one sub-block). Row kernel (decode): vpdpbusd 4-product sums, two zmm of
// them packed into int16 word pairs and scaled by one vpdpwssd (DotBlockVnni). Either way the
// 16 int32 lanes are folded to 8 (lane j + lane j + 8), the bsum term is added with one more
// vpdpwssd (int16 bsums x int16 -32 * sc, or -bsums x 32 * sc), and only then converted to
// float: all integer steps are exact, the float steps are the twin's one for one.
//
// Level unpack without per-byte shifts: for 64 levels (two chunks), the qh bytes of the half
// are broadcast to both 256-bit halves and masked with 0x33 (lower half: bits 0-1 and 4-5) or
// 0xCC (upper: bits 2-3, 6-7); a 16-bit shift then puts the wanted 2 bits at bits 4-5 with
// zeros at bits 6-7, and one vpternlogd takes bits 0-3 from the ql nibble and 4-7 from that.
#include <immintrin.h>

#include <cstdint>

#include "kernels/kernels_impl.h"
#include "kernels/x86_reduce.h"
#include "tensor/dtype.h"

namespace strata::kernels::internal::lowbit_avx512 {
namespace {

inline float Fp16(uint16_t h) { return _cvtsh_ss(h); }

using x86::Reduce8;  // the twin's final reduction of the 8 float lanes

// Constants of the level / scale unpack.
struct Q6Consts {
  __m512i low4;     // 0x0F per byte: ternlog select mask (nibble bits from ql)
  __m512i hmask;    // 0x33 per byte in the lower 256 bits, 0xCC in the upper
  __m512i shl;      // int16 shift counts: 4 (lower half), 2 (upper half)
  __m512i shr;      // int16 shift counts: 0 (lower half), 2 (upper half)
  __m512i idx[4];   // vpermw indices: word p of scale vector m = sc[4m + p / 8]
  __m512i idx2[2];  // vpermw indices: word p of scale pair k = sc[4 (2k + p % 2) + p / 8]
};

inline Q6Consts MakeConsts() {
  Q6Consts c;
  c.low4 = _mm512_set1_epi8(0x0F);
  c.hmask =
      _mm512_inserti64x4(_mm512_set1_epi8(0x33), _mm256_set1_epi8(static_cast<char>(0xCC)), 1);
  c.shl = _mm512_inserti64x4(_mm512_set1_epi16(4), _mm256_set1_epi16(2), 1);
  c.shr = _mm512_inserti64x4(_mm512_setzero_si512(), _mm256_set1_epi16(2), 1);
  for (int m = 0; m < 4; ++m) {
    alignas(64) int16_t ix[32];
    for (int p = 0; p < 32; ++p) ix[p] = static_cast<int16_t>(4 * m + p / 8);
    c.idx[m] = _mm512_load_si512(ix);
  }
  for (int k = 0; k < 2; ++k) {
    alignas(64) int16_t ix[32];
    for (int p = 0; p < 32; ++p) ix[p] = static_cast<int16_t>(4 * (2 * k + p % 2) + p / 8);
    c.idx2[k] = _mm512_load_si512(ix);
  }
  return c;
}

// Levels of one super-block: q[m] = levels of elements 64m .. 64m + 63 (unsigned bytes).
inline void UnpackLevels(const BlockQ6_K& b, const Q6Consts& c, __m512i q[4]) {
#pragma GCC unroll 2
  for (int h = 0; h < 2; ++h) {
    const __m512i l = _mm512_loadu_si512(b.ql + 64 * h);
    const __m512i hb = _mm512_and_si512(
        _mm512_broadcast_i64x4(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(b.qh + 32 * h))),
        c.hmask);
    // bits 4-5 = qh bits (0-1 | 2-3) and (4-5 | 6-7) of the lower | upper 32 elements.
    const __m512i h0 = _mm512_sllv_epi16(hb, c.shl);
    const __m512i h1 = _mm512_srlv_epi16(hb, c.shr);
    // (low4 ? l : h0), written over h0 / h1.
    q[2 * h] = _mm512_ternarylogic_epi32(h0, l, c.low4, 0xD8);
    q[2 * h + 1] = _mm512_ternarylogic_epi32(h1, _mm512_srli_epi16(l, 4), c.low4, 0xD8);
  }
}

// The 16 scales as int16, twice (words 0..15 and 16..31).
inline __m512i LoadScales(const BlockQ6_K& b) {
  return _mm512_cvtepi8_epi16(
      _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(b.scales))));
}

// 16 int32 lanes: lane j = sum over the 4 zmm of scale * (4 products of lane j), with s[m] =
// the int16 scale of each pair of elements of q[m] (vpmaddubsw + vpdpwssd per zmm).
inline __m512i DotBlock(const __m512i q[4], const __m512i s[4], const int8_t* x) {
  __m512i acc = _mm512_madd_epi16(_mm512_maddubs_epi16(q[0], _mm512_loadu_si512(x)), s[0]);
#pragma GCC unroll 3
  for (int m = 1; m < 4; ++m)
    acc =
        _mm512_dpwssd_epi32(acc, _mm512_maddubs_epi16(q[m], _mm512_loadu_si512(x + 64 * m)), s[m]);
  return acc;
}

// The same sums with VNNI: vpdpbusd gives the 4-product sums of each int32 lane (at most 4 * 63
// * 128 in magnitude, so exactly an int16); those of zmm 2k and 2k + 1 are packed into the low
// and high word of each lane and one vpdpwssd applies both scales, s2[k] = (sc of zmm 2k, sc
// of zmm 2k + 1) word pairs. Fewer multiplies than DotBlock, one more cheap op per zmm pair;
// faster for one token, slower in the 4-token tile (measured).
inline __m512i DotBlockVnni(const __m512i q[4], const __m512i s2[2], const int8_t* x) {
  const __m512i z = _mm512_setzero_si512();
  __m512i v[4];
#pragma GCC unroll 4
  for (int m = 0; m < 4; ++m) v[m] = _mm512_dpbusd_epi32(z, q[m], _mm512_loadu_si512(x + 64 * m));
  const __mmask32 hi = 0xAAAAAAAAu;
  const __m512i p0 = _mm512_mask_blend_epi16(hi, v[0], _mm512_slli_epi32(v[1], 16));
  const __m512i p1 = _mm512_mask_blend_epi16(hi, v[2], _mm512_slli_epi32(v[3], 16));
  return _mm512_dpwssd_epi32(_mm512_madd_epi16(p0, s2[0]), p1, s2[1]);
}

inline __m256i Fold(__m512i v) {
  return _mm256_add_epi32(_mm512_castsi512_si256(v), _mm512_extracti64x4_epi64(v, 1));
}

// dx * dw (one fp32 product) in all 8 lanes.
inline __m256 DxDw(const BlockQ8_K& x, const BlockQ6_K& w) {
  return _mm256_mul_ps(_mm256_set1_ps(x.d),
                       _mm256_cvtph_ps(_mm_set1_epi16(static_cast<int16_t>(w.d))));
}

inline __m256i LoadBsums(const BlockQ8_K& x) {
  return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x.bsums));
}

// One weight row x one token: the twin's 8 lanes, block after block.
inline __m256 RowLanes(int64_t nb, const BlockQ6_K* a, const BlockQ8_K* b, const Q6Consts& c) {
  __m256 acc = _mm256_setzero_ps();
  for (int64_t i = 0; i < nb; ++i) {
    __m512i q[4];
    UnpackLevels(a[i], c, q);
    const __m512i sc = LoadScales(a[i]);
    const __m512i s2[2] = {_mm512_permutexvar_epi16(c.idx2[0], sc),
                           _mm512_permutexvar_epi16(c.idx2[1], sc)};
    __m256i v = Fold(DotBlockVnni(q, s2, b[i].qs));
    // - 32 * (bsum[2l] sc[2l] + bsum[2l + 1] sc[2l + 1]) = bsum . (sc * -32): |sc * 32| <= 4096.
    const __m256i scm =
        _mm256_slli_epi16(_mm256_sub_epi16(_mm256_setzero_si256(), _mm512_castsi512_si256(sc)), 5);
    v = _mm256_dpwssd_epi32(v, LoadBsums(b[i]), scm);
    acc = _mm256_fmadd_ps(DxDw(b[i], a[i]), _mm256_cvtepi32_ps(v), acc);
  }
  return acc;
}

// NR weight rows x NX (2..4) tokens. Per block and row the levels and scales are unpacked
// once and used for the NX tokens. Token pairs share the float steps: the two 16-lane integer
// sums are folded into one zmm [token t | token t + 1] (8 lanes each), and the bsum term, the
// int -> float conversion and the fma run on both at once, with dw * dx of each token in its
// half.
template <int NR, int NX>
void Tile(int64_t n, const uint8_t* w, size_t ws, const uint8_t* x, size_t xs, float* y,
          size_t ys) {
  constexpr int kPairs = NX / 2;
  constexpr bool kOdd = NX % 2 == 1;
  const Q6Consts c = MakeConsts();
  const int64_t nb = n / kQK_K;
  const BlockQ6_K* a[NR];
  const BlockQ8_K* b[NX];
  for (int r = 0; r < NR; ++r) a[r] = reinterpret_cast<const BlockQ6_K*>(w + r * ws);
  for (int t = 0; t < NX; ++t) b[t] = reinterpret_cast<const BlockQ8_K*>(x + t * xs);
  __m512 accp[NR][kPairs > 0 ? kPairs : 1];
  __m256 acco[NR];
  for (int r = 0; r < NR; ++r) {
    for (int p = 0; p < kPairs; ++p) accp[r][p] = _mm512_setzero_ps();
    acco[r] = _mm256_setzero_ps();
  }
  for (int64_t i = 0; i < nb; ++i) {
    // Per token pair: bsums [t | t + 1] and dx [t x 8 | t + 1 x 8].
    __m512i bsp[kPairs > 0 ? kPairs : 1];
    __m512 dxp[kPairs > 0 ? kPairs : 1];
#pragma GCC unroll 2
    for (int p = 0; p < kPairs; ++p) {
      // -bsum: |bsum| <= 16 * 128 for Q8_K blocks.
      bsp[p] = _mm512_sub_epi16(_mm512_setzero_si512(),
                                _mm512_inserti64x4(_mm512_castsi256_si512(LoadBsums(b[2 * p][i])),
                                                   LoadBsums(b[2 * p + 1][i]), 1));
      dxp[p] =
          _mm512_insertf32x8(_mm512_set1_ps(b[2 * p][i].d), _mm256_set1_ps(b[2 * p + 1][i].d), 1);
    }
#pragma GCC unroll 4
    for (int r = 0; r < NR; ++r) {
      __m512i q[4], s[4];
      UnpackLevels(a[r][i], c, q);
      const __m512i sc = LoadScales(a[r][i]);
#pragma GCC unroll 4
      for (int m = 0; m < 4; ++m) s[m] = _mm512_permutexvar_epi16(c.idx[m], sc);
      const __m512i sc32 = _mm512_slli_epi16(sc, 5);  // |sc * 32| <= 4096
      const float dw = Fp16(a[r][i].d);
#pragma GCC unroll 2
      for (int p = 0; p < kPairs; ++p) {
        const __m512i v0 = DotBlock(q, s, b[2 * p][i].qs);
        const __m512i v1 = DotBlock(q, s, b[2 * p + 1][i].qs);
        // [v0 lanes 0-7 | v1 lanes 0-7] + [v0 lanes 8-15 | v1 lanes 8-15].
        __m512i v = _mm512_add_epi32(_mm512_shuffle_i64x2(v0, v1, 0x44),
                                     _mm512_shuffle_i64x2(v0, v1, 0xEE));
        v = _mm512_dpwssd_epi32(v, bsp[p], sc32);
        const __m512 d = _mm512_mul_ps(_mm512_set1_ps(dw), dxp[p]);
        accp[r][p] = _mm512_fmadd_ps(d, _mm512_cvtepi32_ps(v), accp[r][p]);
      }
      if constexpr (kOdd) {
        const BlockQ8_K& bx = b[NX - 1][i];
        __m256i v = Fold(DotBlock(q, s, bx.qs));
        v = _mm256_dpwssd_epi32(v, _mm256_sub_epi16(_mm256_setzero_si256(), LoadBsums(bx)),
                                _mm512_castsi512_si256(sc32));
        acco[r] = _mm256_fmadd_ps(_mm256_set1_ps(bx.d * dw), _mm256_cvtepi32_ps(v), acco[r]);
      }
    }
  }
  for (int r = 0; r < NR; ++r) {
    for (int p = 0; p < kPairs; ++p) {
      y[(2 * p) * ys + r] = Reduce8(_mm512_castps512_ps256(accp[r][p]));
      y[(2 * p + 1) * ys + r] = Reduce8(_mm512_extractf32x8_ps(accp[r][p], 1));
    }
    if constexpr (kOdd) y[(NX - 1) * ys + r] = Reduce8(acco[r]);
  }
}

using TileFn = void (*)(int64_t, const uint8_t*, size_t, const uint8_t*, size_t, float*, size_t);

template <int NR>
constexpr TileFn kTiles[3] = {Tile<NR, 2>, Tile<NR, 3>, Tile<NR, 4>};

}  // namespace

float DotQ6_KPlain(int64_t n, const void* w, const void* x) {
  const Q6Consts c = MakeConsts();
  return Reduce8(
      RowLanes(n / kQK_K, static_cast<const BlockQ6_K*>(w), static_cast<const BlockQ8_K*>(x), c));
}

void TileQ6_K(int64_t n, const void* w, size_t ws, int nw, const void* x, size_t xs, int nx,
              float* y, size_t ys) {
  const uint8_t* wb = static_cast<const uint8_t*>(w);
  const uint8_t* xb = static_cast<const uint8_t*>(x);
  if (nx == 1) {
    // One token: nothing to share but the activation loads, and one row after the other keeps
    // the weights a single sequential stream (a 4-row interleave measured ~2x slower when they
    // come from DRAM).
    const Q6Consts c = MakeConsts();
    for (int r = 0; r < nw; ++r)
      y[r] = Reduce8(RowLanes(n / kQK_K, reinterpret_cast<const BlockQ6_K*>(wb + r * ws),
                              reinterpret_cast<const BlockQ8_K*>(xb), c));
    return;
  }
  switch (nw) {
    case 1: kTiles<1>[nx - 2](n, wb, ws, xb, xs, y, ys); break;
    case 2: kTiles<2>[nx - 2](n, wb, ws, xb, xs, y, ys); break;
    case 3: kTiles<3>[nx - 2](n, wb, ws, xb, xs, y, ys); break;
    default: kTiles<4>[nx - 2](n, wb, ws, xb, xs, y, ys); break;
  }
}

}  // namespace strata::kernels::internal::lowbit_avx512
