// AVX-512 versions of llama.cpp's repacked Q4_K GEMV order (DotQ4_KRepackGemv; the order is
// documented in kernels_lowbit_ref.cc): per super-block and weight row,
//   acc  = fma(float(sum_j sc[j] * S32_j), fp16(d) * dx, acc)
//   accm = fma(float(sum_j m[j] * B_j), fp16(dmin) * dx, accm),   result acc - accm,
// with S32_j the exact level . activation sum of 32-element sub-block j and B_j its activation
// sum. Decode streams every weight byte once, so the kernel works on 4 weight rows at a time
// (one token): the activation block is loaded and rearranged once for the 4 rows, the 4 rows'
// scales and mins are unpacked together in one vector, and the float steps of the 4 rows run
// side by side in vector lanes (a lane-wise fma rounds exactly like the scalar fma).
//
// Integer part, per row (all sums exact, so their grouping does not matter):
//   vpdpbusd: unsigned levels (0..15) x signed activations, 4 products per int32 lane; a
//     64-byte vector of levels covers two sub-blocks (8 lanes each). |lane| <= 4 * 15 * 128,
//     so the lanes of two such vectors pack into int16 without saturation (vpackssdw);
//   vpdpwssd: the packed int16 lanes times their sub-block scale (0..63), pairwise summed and
//     accumulated into int32 (|total| <= 256 * 15 * 128 * 63 < 2^31).
// The mins: vpmaddwd of the 4 rows' mins (int16) with the activation pair sums. Each tile
// also prefetches the rows 16 further on (see kPrefetchRows). DotQ4_KRepackGemv (one row, not
// used by MatMul when the tile exists) uses the same integer steps for a single row.
#include <immintrin.h>

#include <cmath>

#include "kernels/kernels_impl.h"

namespace strata::kernels::internal::lowbit_avx512 {
namespace {

constexpr uint8_t kNoByte = 0x80;  // vpshufb index that yields a zero byte

// vpshufb controls building a row pair's scale vectors from T (every 128-bit lane of T:
// bytes 0..7 = scales of the pair's first row, 8..15 = of its second row). For product
// vector X (A: low nibbles of qs[0..63], B: high nibbles of qs[0..63], C / D: the same for
// qs[64..127]), 128-bit lane k belongs to sub-block kSub[X][k]; after vpackssdw of the two
// rows' vectors its int16 words 0..3 are the first row's, 4..7 the second row's.
struct ScaleCtrl {
  alignas(64) uint8_t b[4][64];
};
constexpr ScaleCtrl MakeScaleCtrl() {
  constexpr int kSub[4][4] = {{0, 0, 2, 2}, {1, 1, 3, 3}, {4, 4, 6, 6}, {5, 5, 7, 7}};
  ScaleCtrl c{};
  for (int x = 0; x < 4; ++x)
    for (int k = 0; k < 4; ++k)
      for (int w = 0; w < 8; ++w) {
        c.b[x][16 * k + 2 * w] = static_cast<uint8_t>((w < 4 ? 0 : 8) + kSub[x][k]);
        c.b[x][16 * k + 2 * w + 1] = kNoByte;
      }
  return c;
}
alignas(64) constexpr ScaleCtrl kScaleCtrl = MakeScaleCtrl();

// The same for a single row (DotQ4_KRepackGemv), whose vpackssdw combines the row's products
// of low and high nibbles of 64-byte half h: lane k, words 0..3: sub-block 4h + 2 (k / 2),
// words 4..7: the next one (scales taken from bytes 0..7 of the unpacked lane).
constexpr ScaleCtrl MakeRowCtrl() {
  ScaleCtrl c{};
  for (int h = 0; h < 2; ++h)
    for (int k = 0; k < 4; ++k)
      for (int w = 0; w < 8; ++w) {
        c.b[h][16 * k + 2 * w] = static_cast<uint8_t>(4 * h + 2 * (k / 2) + (w < 4 ? 0 : 1));
        c.b[h][16 * k + 2 * w + 1] = kNoByte;
      }
  return c;
}
alignas(64) constexpr ScaleCtrl kRowCtrl = MakeRowCtrl();

// Word k of the result: fp16 d of row k (k < 4), fp16 dmin of row k - 4 (4 <= k < 8), taken
// from the block headers (128-bit lane r = the first 16 bytes of row r's block).
alignas(64) constexpr uint16_t kHeaderIdx[32] = {0, 8, 16, 24, 1, 9, 17, 25};
// Transposes the 4 rows' mins (int16 word 8r + j = m_r[j]) into word 8p + 2r + e = m_r[2p + e].
alignas(64) constexpr uint16_t kMinIdx[32] = {0,  1,  8,  9,  16, 17, 24, 25, 2,  3,  10,
                                              11, 18, 19, 26, 27, 4,  5,  12, 13, 20, 21,
                                              28, 29, 6,  7,  14, 15, 22, 23, 30, 31};
// int32 lane 4p + r = activation pair sum dword p (B[2p], B[2p+1]).
alignas(64) constexpr uint32_t kPairIdx[16] = {0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3};
// Scale unpacking per 128-bit lane (dwords of a block header: W0 = d | dmin << 16, W1..W3 =
// the 12 packed scale bytes): dword shifts and masks, see UnpackScales4.
alignas(64) constexpr uint32_t kShift1[16] = {0, 0, 0, 4, 0, 0, 0, 4, 0, 0, 0, 4, 0, 0, 0, 4};
alignas(64) constexpr uint32_t kMask1[16] = {
    0x3f3f3f3f, 0x0f0f0f0f, 0x3f3f3f3f, 0x0f0f0f0f, 0x3f3f3f3f, 0x0f0f0f0f, 0x3f3f3f3f, 0x0f0f0f0f,
    0x3f3f3f3f, 0x0f0f0f0f, 0x3f3f3f3f, 0x0f0f0f0f, 0x3f3f3f3f, 0x0f0f0f0f, 0x3f3f3f3f, 0x0f0f0f0f};
alignas(64) constexpr uint32_t kMask2[16] = {0, 0x30303030, 0, 0x30303030, 0, 0x30303030,
                                             0, 0x30303030, 0, 0x30303030, 0, 0x30303030,
                                             0, 0x30303030, 0, 0x30303030};

inline __m512i LoadConst(const void* p) { return _mm512_load_si512(p); }

// The 4 rows' scales and mins: in 128-bit lane r, bytes 0..7 = sc_r[0..7], 8..15 = m_r[0..7]
// (the same values as UnpackScaleMinK4). In each lane of h: W1 holds sc0..3 (low 6 bits) and
// the high 2 bits of sc4..7, W2 likewise for the mins, W3 the low 4 bits of sc4..7 (low
// nibbles) and of m4..7 (high nibbles).
inline __m512i UnpackScales4(__m512i h) {
  // [W1, W3, W2, W3 >> 4] & [3f, 0f, 3f, 0f] | ([W1, W1, W2, W2] >> 2) & [0, 30, 0, 30].
  const __m512i x1 = _mm512_shuffle_epi32(h, static_cast<_MM_PERM_ENUM>(_MM_SHUFFLE(3, 2, 3, 1)));
  const __m512i x2 = _mm512_shuffle_epi32(h, static_cast<_MM_PERM_ENUM>(_MM_SHUFFLE(2, 2, 1, 1)));
  const __m512i y1 = _mm512_and_si512(_mm512_srlv_epi32(x1, LoadConst(kShift1)), LoadConst(kMask1));
  // y1 | (x2 >> 2 & mask2)
  return _mm512_ternarylogic_epi32(y1, _mm512_srli_epi32(x2, 2), LoadConst(kMask2), 0xF8);
}

// One row pair's int32 accumulator for one super-block: 128-bit lane k holds, in dwords
// (0, 1), partial sums of sum_j sc[j] * S32_j of the first row and in (2, 3) of the second.
inline __m512i PairSums(const uint8_t* q0, const uint8_t* q1, __m512i t, const __m512i xv[4],
                        __m512i m4, const __m512i ctrl[4]) {
  const __m512i b0 = _mm512_loadu_si512(q0), c0 = _mm512_loadu_si512(q0 + 64);
  const __m512i b1 = _mm512_loadu_si512(q1), c1 = _mm512_loadu_si512(q1 + 64);
  const __m512i z = _mm512_setzero_si512();
  const __m512i pa0 = _mm512_dpbusd_epi32(z, _mm512_and_si512(b0, m4), xv[0]);
  const __m512i pa1 = _mm512_dpbusd_epi32(z, _mm512_and_si512(b1, m4), xv[0]);
  const __m512i pb0 = _mm512_dpbusd_epi32(z, _mm512_and_si512(_mm512_srli_epi16(b0, 4), m4), xv[1]);
  const __m512i pb1 = _mm512_dpbusd_epi32(z, _mm512_and_si512(_mm512_srli_epi16(b1, 4), m4), xv[1]);
  const __m512i pc0 = _mm512_dpbusd_epi32(z, _mm512_and_si512(c0, m4), xv[2]);
  const __m512i pc1 = _mm512_dpbusd_epi32(z, _mm512_and_si512(c1, m4), xv[2]);
  const __m512i pd0 = _mm512_dpbusd_epi32(z, _mm512_and_si512(_mm512_srli_epi16(c0, 4), m4), xv[3]);
  const __m512i pd1 = _mm512_dpbusd_epi32(z, _mm512_and_si512(_mm512_srli_epi16(c1, 4), m4), xv[3]);
  // Two chains (shorter latency per super-block).
  __m512i acc0 =
      _mm512_dpwssd_epi32(z, _mm512_packs_epi32(pa0, pa1), _mm512_shuffle_epi8(t, ctrl[0]));
  __m512i acc1 =
      _mm512_dpwssd_epi32(z, _mm512_packs_epi32(pc0, pc1), _mm512_shuffle_epi8(t, ctrl[2]));
  acc0 = _mm512_dpwssd_epi32(acc0, _mm512_packs_epi32(pb0, pb1), _mm512_shuffle_epi8(t, ctrl[1]));
  acc1 = _mm512_dpwssd_epi32(acc1, _mm512_packs_epi32(pd0, pd1), _mm512_shuffle_epi8(t, ctrl[3]));
  return _mm512_add_epi32(acc0, acc1);
}

// MatMul walks the rows in consecutive 4-row tiles, each row read as a short stream (e.g. 864
// bytes for 1536 columns), too short for the hardware prefetchers once the weights come from
// DRAM; so each tile prefetches the matching blocks of the rows this far ahead (into L2). A
// prefetch never faults, also past the end of the matrix.
constexpr int kPrefetchRows = 16;

// The GEMV order for 4 weight rows (a[r], possibly repeated) and one token: out[r] = row r's
// result. kPairs = 1 computes rows 0 and 1 only (out[2], out[3] are then those of rows 0, 1).
// pf != 0: prefetch the rows pf bytes further on.
template <int kPairs>
__attribute__((always_inline)) inline void Gemv4(int64_t n, const BlockQ4_K* const a[4],
                                                 const BlockQ8_K* b, float* out, ptrdiff_t pf) {
  const __m512i m4 = _mm512_set1_epi8(0x0F);
  const __m512i ctrl[4] = {LoadConst(kScaleCtrl.b[0]), LoadConst(kScaleCtrl.b[1]),
                           LoadConst(kScaleCtrl.b[2]), LoadConst(kScaleCtrl.b[3])};
  const __m512i pair_sc0 = _mm512_setr_epi64(0, 2, 0, 2, 0, 2, 0, 2);  // qwords of U
  const __m512i pair_sc1 = _mm512_setr_epi64(4, 6, 4, 6, 4, 6, 4, 6);
  const BlockQ4_K* a1 = a[kPairs == 2 ? 2 : 0];
  const BlockQ4_K* a3 = a[kPairs == 2 ? 3 : 1];
  __m256 acc = _mm256_setzero_ps();  // lanes 0..3: acc of rows 0..3, 4..7: accm
  for (int64_t i = 0; i < n / kQK_K; ++i) {
    const BlockQ8_K& x = b[i];
    if (pf != 0) {  // the same blocks of the rows pf bytes further on, into L2
      for (int r = 0; r < 2 * kPairs; ++r) {
        // The address may lie past the rows' end: computed as an integer, not by pointer
        // arithmetic (undefined out of bounds); a prefetch never faults.
        const uintptr_t p = reinterpret_cast<uintptr_t>(&a[r][i]) + pf;
        // NOLINTBEGIN(performance-no-int-to-ptr)
        _mm_prefetch(reinterpret_cast<const char*>(p), _MM_HINT_T1);
        _mm_prefetch(reinterpret_cast<const char*>(p + 64), _MM_HINT_T1);
        _mm_prefetch(reinterpret_cast<const char*>(p + 128), _MM_HINT_T1);
        // NOLINTEND(performance-no-int-to-ptr)
      }
    }
    // Activations rearranged to match the level vectors: xv[0] = x[0..31 | 64..95], xv[1] =
    // x[32..63 | 96..127], xv[2] = x[128..159 | 192..223], xv[3] = x[160..191 | 224..255].
    const __m512i x0 = _mm512_loadu_si512(x.qs), x1 = _mm512_loadu_si512(x.qs + 64);
    const __m512i x2 = _mm512_loadu_si512(x.qs + 128), x3 = _mm512_loadu_si512(x.qs + 192);
    const __m512i xv[4] = {_mm512_shuffle_i64x2(x0, x1, _MM_SHUFFLE(1, 0, 1, 0)),
                           _mm512_shuffle_i64x2(x0, x1, _MM_SHUFFLE(3, 2, 3, 2)),
                           _mm512_shuffle_i64x2(x2, x3, _MM_SHUFFLE(1, 0, 1, 0)),
                           _mm512_shuffle_i64x2(x2, x3, _MM_SHUFFLE(3, 2, 3, 2))};
    // Block headers (d, dmin, scales) of the 4 rows, one per 128-bit lane.
    __m512i h = _mm512_castsi128_si512(_mm_loadu_si128(reinterpret_cast<const __m128i*>(&a[0][i])));
    h = _mm512_inserti32x4(h, _mm_loadu_si128(reinterpret_cast<const __m128i*>(&a[1][i])), 1);
    h = _mm512_inserti32x4(h, _mm_loadu_si128(reinterpret_cast<const __m128i*>(&a1[i])), 2);
    h = _mm512_inserti32x4(h, _mm_loadu_si128(reinterpret_cast<const __m128i*>(&a3[i])), 3);
    const __m512i u = UnpackScales4(h);
    // Scale sums: row pair (0, 1) in acc01, (2, 3) in acc23; lane 4k + r of s = partial of row r.
    const __m512i acc01 =
        PairSums(a[0][i].qs, a[1][i].qs, _mm512_permutexvar_epi64(pair_sc0, u), xv, m4, ctrl);
    __m512i acc23 = acc01;
    if constexpr (kPairs == 2)
      acc23 = PairSums(a1[i].qs, a3[i].qs, _mm512_permutexvar_epi64(pair_sc1, u), xv, m4, ctrl);
    const __m512i s = _mm512_add_epi32(
        _mm512_castps_si512(_mm512_shuffle_ps(_mm512_castsi512_ps(acc01),
                                              _mm512_castsi512_ps(acc23), _MM_SHUFFLE(2, 0, 2, 0))),
        _mm512_castps_si512(_mm512_shuffle_ps(
            _mm512_castsi512_ps(acc01), _mm512_castsi512_ps(acc23), _MM_SHUFFLE(3, 1, 3, 1))));
    // Min sums, lane 4p + r = m_r[2p] B[2p] + m_r[2p+1] B[2p+1].
    const __m512i mins = _mm512_permutexvar_epi16(LoadConst(kMinIdx),
                                                  _mm512_unpackhi_epi8(u, _mm512_setzero_si512()));
    const __m128i bsum =
        _mm_hadd_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(x.bsums)),
                       _mm_loadu_si128(reinterpret_cast<const __m128i*>(x.bsums + 8)));
    const __m512i sm = _mm512_madd_epi16(
        mins, _mm512_permutexvar_epi32(LoadConst(kPairIdx), _mm512_castsi128_si512(bsum)));
    // Totals over the four 128-bit lanes: [s_0..3, sm_0..3].
    const __m512i c = _mm512_add_epi32(_mm512_shuffle_i32x4(s, sm, _MM_SHUFFLE(1, 0, 1, 0)),
                                       _mm512_shuffle_i32x4(s, sm, _MM_SHUFFLE(3, 2, 3, 2)));
    const __m512i e = _mm512_shuffle_i32x4(c, c, _MM_SHUFFLE(3, 1, 2, 0));
    const __m256i tot =
        _mm256_add_epi32(_mm512_castsi512_si256(e), _mm512_extracti64x4_epi64(e, 1));
    // [fp16(d_r) * dx, fp16(dmin_r) * dx]: one rounding each, as the twin's products.
    const __m256 dw =
        _mm256_cvtph_ps(_mm512_castsi512_si128(_mm512_permutexvar_epi16(LoadConst(kHeaderIdx), h)));
    const __m256 d = _mm256_mul_ps(dw, _mm256_set1_ps(x.d));
    acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(tot), d, acc);
  }
  _mm_storeu_ps(out, _mm_sub_ps(_mm256_castps256_ps128(acc), _mm256_extractf128_ps(acc, 1)));
}

}  // namespace

// One row: the same integer products as Gemv4, with the row's low- and high-nibble products
// packed together, and scalar float steps.
float DotQ4_KRepackGemv(int64_t n, const void* w, const void* xp) {
  const BlockQ4_K* a = static_cast<const BlockQ4_K*>(w);
  const BlockQ8_K* b = static_cast<const BlockQ8_K*>(xp);
  const __m512i m4 = _mm512_set1_epi8(0x0F);
  const __m512i ctrl_lo = LoadConst(kRowCtrl.b[0]), ctrl_hi = LoadConst(kRowCtrl.b[1]);
  const __m512i z = _mm512_setzero_si512();
  float acc = 0.0f, accm = 0.0f;
  for (int64_t i = 0; i < n / kQK_K; ++i) {
    const BlockQ8_K& x = b[i];
    const __m512i x0 = _mm512_loadu_si512(x.qs), x1 = _mm512_loadu_si512(x.qs + 64);
    const __m512i x2 = _mm512_loadu_si512(x.qs + 128), x3 = _mm512_loadu_si512(x.qs + 192);
    const __m512i q0 = _mm512_loadu_si512(a[i].qs), q1 = _mm512_loadu_si512(a[i].qs + 64);
    const __m512i pa = _mm512_dpbusd_epi32(z, _mm512_and_si512(q0, m4),
                                           _mm512_shuffle_i64x2(x0, x1, _MM_SHUFFLE(1, 0, 1, 0)));
    const __m512i pb = _mm512_dpbusd_epi32(z, _mm512_and_si512(_mm512_srli_epi16(q0, 4), m4),
                                           _mm512_shuffle_i64x2(x0, x1, _MM_SHUFFLE(3, 2, 3, 2)));
    const __m512i pc = _mm512_dpbusd_epi32(z, _mm512_and_si512(q1, m4),
                                           _mm512_shuffle_i64x2(x2, x3, _MM_SHUFFLE(1, 0, 1, 0)));
    const __m512i pd = _mm512_dpbusd_epi32(z, _mm512_and_si512(_mm512_srli_epi16(q1, 4), m4),
                                           _mm512_shuffle_i64x2(x2, x3, _MM_SHUFFLE(3, 2, 3, 2)));
    const __m512i u = UnpackScales4(
        _mm512_broadcast_i32x4(_mm_loadu_si128(reinterpret_cast<const __m128i*>(&a[i]))));
    __m512i s = _mm512_dpwssd_epi32(z, _mm512_packs_epi32(pa, pb), _mm512_shuffle_epi8(u, ctrl_lo));
    s = _mm512_dpwssd_epi32(s, _mm512_packs_epi32(pc, pd), _mm512_shuffle_epi8(u, ctrl_hi));
    const __m128i bsum =
        _mm_hadd_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(x.bsums)),
                       _mm_loadu_si128(reinterpret_cast<const __m128i*>(x.bsums + 8)));
    const int32_t sm = _mm512_reduce_add_epi32(_mm512_castsi128_si512(
        _mm_madd_epi16(_mm_unpackhi_epi8(_mm512_castsi512_si128(u), _mm_setzero_si128()), bsum)));
    const float d = _cvtsh_ss(a[i].d) * x.d;
    const float dm = _cvtsh_ss(a[i].dmin) * x.d;
    acc = std::fma(static_cast<float>(_mm512_reduce_add_epi32(s)), d, acc);
    accm = std::fma(static_cast<float>(sm), dm, accm);
  }
  return acc - accm;
}

// Every entry is computed by Gemv4 with the same per-lane steps, so it does not depend on nw,
// nx or its position. Rows >= nw repeat row 0 and are discarded; several tokens run one after
// the other over the same (by then cached) 4 rows.
void TileQ4_KRepackGemv(int64_t n, const void* w, size_t ws, int nw, const void* x, size_t xs,
                        int nx, float* y, size_t ys) {
  const uint8_t* wp = static_cast<const uint8_t*>(w);
  const BlockQ4_K* a[4];
  for (int r = 0; r < 4; ++r) a[r] = reinterpret_cast<const BlockQ4_K*>(wp + (r < nw ? r : 0) * ws);
  for (int t = 0; t < nx; ++t) {
    const BlockQ8_K* b =
        reinterpret_cast<const BlockQ8_K*>(static_cast<const uint8_t*>(x) + t * xs);
    float out[4];
    const ptrdiff_t pf = t == 0 ? static_cast<ptrdiff_t>(kPrefetchRows * ws) : 0;
    if (nw > 2) {
      Gemv4<2>(n, a, b, out, pf);
    } else {
      Gemv4<1>(n, a, b, out, pf);
    }
    for (int r = 0; r < nw; ++r) y[t * ys + r] = out[r];
  }
}

}  // namespace strata::kernels::internal::lowbit_avx512
