// AVX-512 (VL + VNNI) version of llama.cpp's repacked Q4_0 order (scalar twin and the order:
// DotQ4_0Repack in kernels_lowbit_ref.cc): per (row, token) one float chain,
// acc = fma(S, dw * dx, acc) block after block, where S is the exact integer dot product of
// the block's 32 levels (nibble - 8) with the 32 activation quants. S is exact in int32
// whatever the grouping, so both kernels compute it as vectors and keep only the float chain
// per (row, token) as the twin does, one (row, token) per float lane.
//
// GEMV tile (decode, and the last n_tok % 4 tokens), 4 rows x up to 4 tokens:
//   - levels unpacked to 32 unsigned nibbles, in the activation's element order;
//   - vpdpbusd (nibble x activation) starting from -8 * (sums of 4 activations) gives 8 int32
//     lanes per (row, token) that add up to S;
//   - the 8-lane vectors of 4 or 8 (row, token) pairs are reduced together by a transposing
//     tree of int16 packs + vpmaddwd (vphaddd's layout, cheaper; exact, see PairSums) and one
//     cross-half add, which leaves pair p's S in lane p; then one vcvtdq2ps, dw * dx and one
//     fma per lane. One token: a 4-lane group; more: 8-lane groups of tokens {0, 1}, {2, 3},
//     lane 4 * (token % 2) + row.
// GEMM tile (groups of 4 tokens): see Q4_0PreparedTile.
#include <immintrin.h>

#include <cstdint>
#include <cstring>
#include <type_traits>

#include "kernels/kernels_impl.h"
#include "tensor/dtype.h"

namespace strata::kernels::internal::lowbit_avx512 {
namespace {

constexpr int kBlock = 32;

// The 32 levels of a Q4_0 block as unsigned nibbles: bytes 0..15 = low nibbles (elements
// 0..15), bytes 16..31 = high nibbles (elements 16..31).
inline __m256i Nibbles(const BlockQ4_0& b) {
  const __m128i q = _mm_loadu_si128(reinterpret_cast<const __m128i*>(b.qs));
  const __m256i both = _mm256_set_m128i(_mm_srli_epi16(q, 4), q);
  return _mm256_and_si256(both, _mm256_set1_epi8(0x0F));
}

// -8 * (sum of each 4 consecutive activation quants): the start of the vpdpbusd sums, so that
// they add up to sum((nibble - 8) * x).
inline __m256i Offset(__m256i x) {
  return _mm256_sub_epi32(_mm256_setzero_si256(),
                          _mm256_dpbusd_epi32(_mm256_setzero_si256(), _mm256_set1_epi8(8), x));
}

// Adjacent-lane sums of a and b, laid out as vphaddd's [a0+a1, a2+a3, b0+b1, b2+b3 | a4+a5,
// a6+a7, b4+b5, b6+b7], by packing to int16 and one vpmaddwd. Exact while the packed lanes
// fit int16: the trees below pack sums of at most 8 products (nibble - 8) * x, at most
// 8 * 8 * 128 in magnitude; their last step (32 products) adds int32 lanes.
inline __m256i PairSums(__m256i a, __m256i b) {
  return _mm256_madd_epi16(_mm256_packs_epi32(a, b), _mm256_set1_epi16(1));
}

// Lane p = sum of the 8 int32 lanes of v[p], p = 0..7.
inline __m256i Totals8(const __m256i v[8]) {
  const __m256i h01 = PairSums(v[0], v[1]), h23 = PairSums(v[2], v[3]);
  const __m256i h45 = PairSums(v[4], v[5]), h67 = PairSums(v[6], v[7]);
  // g0 = [v0 v1 v2 v3 (elements 0..3) | v0 v1 v2 v3 (elements 4..7)], g1 likewise for v4..v7.
  const __m256i g0 = PairSums(h01, h23), g1 = PairSums(h45, h67);
  return _mm256_add_epi32(_mm256_permute2x128_si256(g0, g1, 0x20),
                          _mm256_permute2x128_si256(g0, g1, 0x31));
}

// Lane p = sum of the 8 int32 lanes of v[p], p = 0..3.
inline __m128i Totals4(const __m256i v[4]) {
  const __m256i g = PairSums(PairSums(v[0], v[1]), PairSums(v[2], v[3]));
  return _mm_add_epi32(_mm256_castsi256_si128(g), _mm256_extracti128_si256(g, 1));
}

// The 4 weight rows of a tile; rows >= nw repeat row 0 (their results are dropped).
struct Rows4 {
  const BlockQ4_0* r[4];
  Rows4(const void* w, size_t ws, int nw) {
    for (int i = 0; i < 4; ++i)
      r[i] = reinterpret_cast<const BlockQ4_0*>(static_cast<const uint8_t*>(w) +
                                                (i < nw ? i : 0) * ws);
  }
  // dw of block b of the 4 rows, as floats in lanes 0..3.
  __m128 Scales(int64_t b) const {
    return _mm_cvtph_ps(_mm_setr_epi16(static_cast<short>(r[0][b].d), static_cast<short>(r[1][b].d),
                                       static_cast<short>(r[2][b].d), static_cast<short>(r[3][b].d),
                                       0, 0, 0, 0));
  }
};

// NX tokens (1..4) x 4 rows, the weights read once for all of them; tokens >= nx repeat
// token 0 (results dropped). out[4t + r] = the twin's chain for (row r, token t).
template <int NX>
void Gemv(int64_t nb, const Rows4& w, const BlockQ8_0* const x[4], float out[16],
          const char* prefetch, size_t prefetch_step) {
  constexpr int kGroups = NX == 1 ? 1 : 2;  // 8-lane groups: tokens {0, 1} and {2, 3}
  __m256 acc[kGroups];
  __m128 acc1 = _mm_setzero_ps();  // NX == 1: one 4-lane group
  for (int g = 0; g < kGroups; ++g) acc[g] = _mm256_setzero_ps();
  for (int64_t b = 0; b < nb; ++b) {
    for (size_t off = 0; off < prefetch_step; off += 64)
      _mm_prefetch(prefetch + b * prefetch_step + off, _MM_HINT_T0);
    __m256i wq[4];
#pragma GCC unroll 4
    for (int r = 0; r < 4; ++r) wq[r] = Nibbles(w.r[r][b]);
    const __m128 dw = w.Scales(b);
    if constexpr (NX == 1) {
      const __m256i xv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x[0][b].qs));
      const __m256i off = Offset(xv);
      __m256i s[4];
#pragma GCC unroll 4
      for (int r = 0; r < 4; ++r) s[r] = _mm256_dpbusd_epi32(off, wq[r], xv);
      const __m128 d = _mm_mul_ps(dw, _mm_set1_ps(_cvtsh_ss(x[0][b].d)));
      acc1 = _mm_fmadd_ps(_mm_cvtepi32_ps(Totals4(s)), d, acc1);
    } else {
      const __m256 dw2 = _mm256_set_m128(dw, dw);
#pragma GCC unroll 2
      for (int g = 0; g < kGroups; ++g) {
        __m256i s[8];  // lane 4h + r: (token 2g + h, row r)
#pragma GCC unroll 2
        for (int h = 0; h < 2; ++h) {
          const BlockQ8_0& xb = x[2 * g + h][b];
          const __m256i xv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xb.qs));
          const __m256i off = Offset(xv);
#pragma GCC unroll 4
          for (int r = 0; r < 4; ++r) s[4 * h + r] = _mm256_dpbusd_epi32(off, wq[r], xv);
        }
        const __m256 dx = _mm256_set_m128(_mm_set1_ps(_cvtsh_ss(x[2 * g + 1][b].d)),
                                          _mm_set1_ps(_cvtsh_ss(x[2 * g][b].d)));
        acc[g] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(Totals8(s)), _mm256_mul_ps(dw2, dx), acc[g]);
      }
    }
  }
  if constexpr (NX == 1) {
    _mm_storeu_ps(out, acc1);
  } else {
    for (int g = 0; g < kGroups; ++g) _mm256_storeu_ps(out + 8 * g, acc[g]);
  }
}

}  // namespace

// MatMul gives this tile the repacked GEMV's tokens (decode, and the last n_tok % 4 tokens of
// a batch); full groups of 4 go to Q4_0PreparedTile.
void TileQ4_0Repack(int64_t n, const void* w, size_t ws, int nw, const void* x, size_t xs, int nx,
                    float* y, size_t ys) {
  const Rows4 rows(w, ws, nw);
  const BlockQ8_0* xr[4];
  for (int t = 0; t < 4; ++t)
    xr[t] =
        reinterpret_cast<const BlockQ8_0*>(static_cast<const uint8_t*>(x) + (t < nx ? t : 0) * xs);
  // Software prefetch of the next tile's rows (MatMul's next call, nw * ws bytes on), at the
  // pace this tile consumes its own: few tokens stream the weights from DRAM, and 4 interleaved
  // row streams alone get less bandwidth than one sequential stream.
  const char* next = static_cast<const char*>(w) + nw * ws;
  const size_t step = static_cast<size_t>(nw) * sizeof(BlockQ4_0);
  const int64_t nb = n / kBlock;
  float out[16];
  switch (nx) {
    case 1: Gemv<1>(nb, rows, xr, out, next, step); break;
    case 2: Gemv<2>(nb, rows, xr, out, next, step); break;
    case 3: Gemv<3>(nb, rows, xr, out, next, step); break;
    default: Gemv<4>(nb, rows, xr, out, next, step);
  }
  for (int t = 0; t < nx; ++t)
    for (int r = 0; r < nw; ++r) y[t * ys + r] = out[4 * t + r];
}

// ---- GEMM over prepared activations -------------------------------------------------------
// A prepared group of 4 tokens, per block of 32 elements (kPrepBytes):
//   [8 k][4 t] int32  the activation quants as dwords: dword k = elements 4k..4k+3 of token t
//   [4 t]      int32  -8 * (sum of the token's 32 quants)
//   [4 t]      float  the token's scale, converted exactly from fp16
// (absent tokens: zeros). Lane 4r + t of a zmm holds (row r, token t): with row r's quant
// bytes in 128-bit lane r, its nibbles' dword k is broadcast within the lane by one vpshufd
// and the 4 tokens' dword k is one 128-bit broadcast, so 8 vpdpbusd give the 16 block sums S
// directly, with no horizontal reduction.
constexpr size_t kPrepBytes = 8 * 16 + 16 + 16;

size_t Q4_0TileXBytes(int64_t n) { return static_cast<size_t>(n / kBlock) * kPrepBytes; }

void Q4_0PrepareTileX(const void* x, size_t xs, int nx, void* dst, int64_t n) {
  uint8_t* out = static_cast<uint8_t*>(dst);
  for (int64_t b = 0; b < n / kBlock; ++b, out += kPrepBytes) {
    int32_t* q = reinterpret_cast<int32_t*>(out);
    int32_t* offs = q + 32;
    float* d = reinterpret_cast<float*>(offs + 4);
    for (int t = 0; t < 4; ++t) {
      if (t >= nx) {
        for (int k = 0; k < 8; ++k) q[4 * k + t] = 0;
        offs[t] = 0;
        d[t] = 0.0f;
        continue;
      }
      const BlockQ8_0& xb =
          reinterpret_cast<const BlockQ8_0*>(static_cast<const uint8_t*>(x) + t * xs)[b];
      int32_t sum = 0;
      for (int k = 0; k < 8; ++k) {
        int32_t v;
        std::memcpy(&v, xb.qs + 4 * k, 4);
        q[4 * k + t] = v;
        for (int e = 0; e < 4; ++e) sum += xb.qs[4 * k + e];
      }
      offs[t] = -8 * sum;
      d[t] = _cvtsh_ss(xb.d);
    }
  }
}

void Q4_0PreparedTile(int64_t n, const void* w, size_t ws, int nw, const void* x, size_t xs, int nx,
                      float* y, size_t ys) {
  (void)xs;  // one group
  const Rows4 rows(w, ws, nw);
  const __m512i spread = _mm512_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3);
  const __m512i m4 = _mm512_set1_epi8(0x0F);
  const uint8_t* g = static_cast<const uint8_t*>(x);
  __m512 acc = _mm512_setzero_ps();
  for (int64_t b = 0; b < n / kBlock; ++b, g += kPrepBytes) {
    // 128-bit lane r = the 16 quant bytes of row r; low nibbles = elements 0..15 (dwords
    // k = 0..3), high nibbles = elements 16..31 (dwords 4..7).
    const auto qs = [&](int r) {
      return _mm_loadu_si128(reinterpret_cast<const __m128i*>(rows.r[r][b].qs));
    };
    __m512i q = _mm512_castsi128_si512(qs(0));
    q = _mm512_inserti32x4(q, qs(1), 1);
    q = _mm512_inserti32x4(q, qs(2), 2);
    q = _mm512_inserti32x4(q, qs(3), 3);
    const __m512i lo = _mm512_and_si512(q, m4), hi = _mm512_and_si512(_mm512_srli_epi16(q, 4), m4);
    // Four independent vpdpbusd chains (dwords k = j, j + 4 share chain j), added at the end:
    // one chain of 8 would wait on the instruction's latency at every step.
    __m512i sk[4] = {
        _mm512_broadcast_i32x4(_mm_load_si128(reinterpret_cast<const __m128i*>(g + 128))),
        _mm512_setzero_si512(), _mm512_setzero_si512(), _mm512_setzero_si512()};
    // Dword k of every row broadcast within its lane (vpshufd), times the 4 tokens' dword k.
    const auto step = [&](__m512i lanes, int k, auto imm) {
      sk[k % 4] = _mm512_dpbusd_epi32(
          sk[k % 4], _mm512_shuffle_epi32(lanes, static_cast<_MM_PERM_ENUM>(decltype(imm)::value)),
          _mm512_broadcast_i32x4(_mm_load_si128(reinterpret_cast<const __m128i*>(g + 16 * k))));
    };
    step(lo, 0, std::integral_constant<int, 0x00>{});
    step(lo, 1, std::integral_constant<int, 0x55>{});
    step(lo, 2, std::integral_constant<int, 0xAA>{});
    step(lo, 3, std::integral_constant<int, 0xFF>{});
    step(hi, 4, std::integral_constant<int, 0x00>{});
    step(hi, 5, std::integral_constant<int, 0x55>{});
    step(hi, 6, std::integral_constant<int, 0xAA>{});
    step(hi, 7, std::integral_constant<int, 0xFF>{});
    const __m512i s =
        _mm512_add_epi32(_mm512_add_epi32(sk[0], sk[1]), _mm512_add_epi32(sk[2], sk[3]));
    const __m512 scale =
        _mm512_mul_ps(_mm512_permutexvar_ps(spread, _mm512_castps128_ps512(rows.Scales(b))),
                      _mm512_broadcast_f32x4(_mm_load_ps(reinterpret_cast<const float*>(g + 144))));
    acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), scale, acc);
  }
  alignas(64) float out[16];
  _mm512_store_ps(out, acc);
  for (int t = 0; t < nx; ++t)
    for (int r = 0; r < nw; ++r) y[t * ys + r] = out[4 * r + t];
}

float DotQ4_0Repack(int64_t n, const void* w, const void* x) {
  float y = 0.0f;
  TileQ4_0Repack(n, w, 0, 1, x, 0, 1, &y, 1);
  return y;
}

}  // namespace strata::kernels::internal::lowbit_avx512
