// AVX-512 (VNNI) tile of llama.cpp's repacked Q4_K GEMM order (kernels_lowbit_ref.cc,
// DotQ4_KRepackGemm): 4 weight rows x 4 tokens, the 16 results in the 16 lanes of one
// register, lane 4r + t = row r, token t.
//
// Per super-block the float steps are the twin's: for each pair c of 32-element sub-blocks,
// acc = fma(float(s_c), dw * dx, acc) and accm = fma(float(sm_c), dmin * dx, accm), with the
// exact integers s_c = sc[2c] S(2c) + sc[2c+1] S(2c+1) and sm_c = m[2c] B(2c) + m[2c+1] B(2c+1).
// The integers are computed with vpdpbusd (4 products per 32-bit lane in one instruction):
//  * 16 bytes of quants ("a quarter", 32 elements as low/high nibbles) of each of the 4 rows
//    fill one register, row r in 128-bit lane r; the matching 16 activation bytes of token t
//    are broadcast to the 4 lanes. Lane (r, k) then sums 4 products of row r, token t.
//  * Two quarters make a sub-block: per lane at most 8 products of 15 * 128, which fits 16
//    bits, so the lanes of sub-blocks 2c and 2c+1 are packed to 16 bits and scaled and added
//    in pairs by one vpmaddwd with sc[2c] / sc[2c+1].
//  * Two unpack/add levels sum the 4 lanes k of each row and put token t in lane 4r + t.
// The tile reads activations either as Q8_K rows, or prepared once per matmul for a group of 4
// tokens (TypeKernels::prepare_tile_x): per super-block the 4 tokens' quants, their sub-block
// sum pairs already in lane order and their scales, so that the tile does not redo that
// per-token work for every 4 weight rows.
#include <immintrin.h>

#include <cstring>

#include "kernels/kernels_impl.h"
#include "tensor/quant.h"

namespace strata::kernels::internal::lowbit_avx512 {
namespace {

// Lanes (r, k) of the four tokens' 32-bit sums -> lane 4r + t = sum over k of m[t] lane (r, k).
inline __m512i SumLanesPerRow(__m512i m0, __m512i m1, __m512i m2, __m512i m3) {
  const __m512i u01 =
      _mm512_add_epi32(_mm512_unpacklo_epi32(m0, m1), _mm512_unpackhi_epi32(m0, m1));
  const __m512i u23 =
      _mm512_add_epi32(_mm512_unpacklo_epi32(m2, m3), _mm512_unpackhi_epi32(m2, m3));
  return _mm512_add_epi32(_mm512_unpacklo_epi64(u01, u23), _mm512_unpackhi_epi64(u01, u23));
}

// Dword c (0..3) of each 128-bit lane, broadcast within the lane: vpshufd, whose immediate
// needs c constant (it is, in the unrolled loops); the switch folds away.
__attribute__((always_inline)) inline __m512i BcastDwordInLanes(__m512i v, int c) {
  switch (c) {
    case 0: return _mm512_shuffle_epi32(v, _MM_PERM_AAAA);
    case 1: return _mm512_shuffle_epi32(v, _MM_PERM_BBBB);
    case 2: return _mm512_shuffle_epi32(v, _MM_PERM_CCCC);
    default: return _mm512_shuffle_epi32(v, _MM_PERM_DDDD);
  }
}

inline __m512i Bcast16(const int8_t* p) {
  return _mm512_broadcast_i32x4(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
}

// Prepared group layout, per super-block (kPrepBytes): [4 tokens][256] int8 quants, then for
// each pair c a register of 16 32-bit lanes, lane 4r + t = (B(2c), B(2c+1)) of token t as
// 16-bit (B(j) = sum of sub-block j), then 16 floats, lane 4r + t = the scale of token t.
constexpr size_t kPrepQs = 4 * kQK_K, kPrepPairs = 4 * 64, kPrepBytes = kPrepQs + kPrepPairs + 64;

// Activations of the 4 tokens, straight from Q8_K rows (tokens >= nx repeat token 0).
class PlainX {
 public:
  PlainX(const void* x, size_t xs, int nx) {
    for (int t = 0; t < 4; ++t)
      b_[t] = reinterpret_cast<const BlockQ8_K*>(static_cast<const uint8_t*>(x) +
                                                 (t < nx ? t : 0) * xs);
  }
  void Start(int64_t i) {
    i_ = i;
    __m128i sbs[4];
    for (int t = 0; t < 4; ++t)
      sbs[t] =
          _mm_hadd_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(b_[t][i].bsums)),
                         _mm_loadu_si128(reinterpret_cast<const __m128i*>(b_[t][i].bsums + 8)));
    // 32-bit unit 4t + c = (B(2c), B(2c+1)) of token t.
    bsum_ = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_set_m128i(sbs[1], sbs[0])),
                               _mm256_set_m128i(sbs[3], sbs[2]), 1);
  }
  const int8_t* Qs(int t) const { return b_[t][i_].qs; }
  __m512 Scales() const {
    return _mm512_broadcast_f32x4(_mm_setr_ps(b_[0][i_].d, b_[1][i_].d, b_[2][i_].d, b_[3][i_].d));
  }
  __m512i SumPairs(int c) const {
    const __m512i tok_unit = _mm512_setr_epi32(0, 4, 8, 12, 0, 4, 8, 12, 0, 4, 8, 12, 0, 4, 8, 12);
    return _mm512_permutexvar_epi32(_mm512_add_epi32(tok_unit, _mm512_set1_epi32(c)), bsum_);
  }

 private:
  const BlockQ8_K* b_[4];
  int64_t i_ = 0;
  __m512i bsum_;
};

// Activations of a prepared group (kPrepBytes per super-block, see above).
class PreparedX {
 public:
  explicit PreparedX(const void* g) : g_(static_cast<const uint8_t*>(g)) {}
  void Start(int64_t i) { p_ = g_ + i * kPrepBytes; }
  const int8_t* Qs(int t) const { return reinterpret_cast<const int8_t*>(p_ + t * kQK_K); }
  __m512 Scales() const { return _mm512_load_ps(p_ + kPrepQs + kPrepPairs); }
  __m512i SumPairs(int c) const { return _mm512_load_si512(p_ + kPrepQs + 64 * c); }

 private:
  const uint8_t* g_;
  const uint8_t* p_ = nullptr;
};

template <class X>
void Tile(int64_t n, const void* w, size_t ws, int nw, X xs, int nx, float* y, size_t ys) {
  const BlockQ4_K* a[4];
  for (int r = 0; r < 4; ++r)
    a[r] =
        reinterpret_cast<const BlockQ4_K*>(static_cast<const uint8_t*>(w) + (r < nw ? r : 0) * ws);
  const __m512i m4 = _mm512_set1_epi8(0xF);
  const __m512i zero = _mm512_setzero_si512();
  __m512 acc = _mm512_setzero_ps(), accm = _mm512_setzero_ps();
  __m512i scale_pick[4];  // pshufb controls: 16-bit unit j of a lane -> 2c + (j >= 4)
  for (int c = 0; c < 4; ++c) {
    const char lo = static_cast<char>(4 * c), hi = static_cast<char>(4 * c + 2);
    scale_pick[c] =
        _mm512_broadcast_i32x4(_mm_setr_epi8(lo, lo + 1, lo, lo + 1, lo, lo + 1, lo, lo + 1, hi,
                                             hi + 1, hi, hi + 1, hi, hi + 1, hi, hi + 1));
  }
  const __m512i var_shift = _mm512_broadcast_i32x4(_mm_setr_epi32(0, 0, 0, 4));
  const __m512i low_mask =
      _mm512_broadcast_i32x4(_mm_setr_epi32(0x3f3f3f3f, 0x0f0f0f0f, 0x3f3f3f3f, 0x0f0f0f0f));
  const __m512i high_mask = _mm512_broadcast_i32x4(_mm_setr_epi32(0, 0x30303030, 0, 0x30303030));
  for (int64_t i = 0; i < n / kQK_K; ++i) {
    xs.Start(i);
    // The first 16 bytes of each row's block, row r in 128-bit lane r: 32-bit unit 0 =
    // (d, dmin) as fp16, units 1..3 = the 12 bytes of packed 6-bit scales / mins (w0, w1, w2).
    const auto head = [&](int r) {
      return _mm_loadu_si128(reinterpret_cast<const __m128i*>(&a[r][i]));
    };
    __m512i hd = _mm512_castsi128_si512(head(0));
    hd = _mm512_inserti32x4(hd, head(1), 1);
    hd = _mm512_inserti32x4(hd, head(2), 2);
    hd = _mm512_inserti32x4(hd, head(3), 3);
    // Per lane: (w0 & 0x3f..) = scales 0..3, (w2 & 0x0f..) | high bits from w0 = scales 4..7,
    // likewise the mins from w1 and w2 >> 4; then zero-extended to 16 bits, row r in lane r:
    // 32-bit unit c = (v[2c], v[2c+1]).
    const __m512i sw = _mm512_shuffle_epi32(hd, static_cast<_MM_PERM_ENUM>(0xED));  // w0 w2 w1 w2
    const __m512i hw = _mm512_shuffle_epi32(hd, static_cast<_MM_PERM_ENUM>(0xA5));  // w0 w0 w1 w1
    const __m512i packed =
        _mm512_or_si512(_mm512_and_si512(_mm512_srlv_epi32(sw, var_shift), low_mask),
                        _mm512_and_si512(_mm512_srli_epi32(hw, 2), high_mask));
    const __m512i sc16 = _mm512_unpacklo_epi8(packed, zero);
    const __m512i mn16 = _mm512_unpackhi_epi8(packed, zero);
    // dw * dx and dmin * dx per lane 4r + t (one rounding, as the twin's products).
    const __m512i dd = _mm512_shuffle_epi32(hd, static_cast<_MM_PERM_ENUM>(0x00));
    const __m512 xd = xs.Scales();
    const __m512 d = _mm512_mul_ps(_mm512_cvtph_ps(_mm512_cvtepi32_epi16(dd)), xd);
    const __m512 dm =
        _mm512_mul_ps(_mm512_cvtph_ps(_mm512_cvtepi32_epi16(_mm512_srli_epi32(dd, 16))), xd);
#pragma GCC unroll 2
    for (int h = 0; h < 2; ++h) {
      // Quants 64h..64h+63 of each row; z[q] = quarter q (16 bytes) of the 4 rows.
      const __m512i r0 = _mm512_loadu_si512(a[0][i].qs + 64 * h);
      const __m512i r1 = _mm512_loadu_si512(a[1][i].qs + 64 * h);
      const __m512i r2 = _mm512_loadu_si512(a[2][i].qs + 64 * h);
      const __m512i r3 = _mm512_loadu_si512(a[3][i].qs + 64 * h);
      const __m512i t01a = _mm512_shuffle_i64x2(r0, r1, 0x44),
                    t23a = _mm512_shuffle_i64x2(r2, r3, 0x44);
      const __m512i t01b = _mm512_shuffle_i64x2(r0, r1, 0xEE),
                    t23b = _mm512_shuffle_i64x2(r2, r3, 0xEE);
      const __m512i z[4] = {
          _mm512_shuffle_i64x2(t01a, t23a, 0x88), _mm512_shuffle_i64x2(t01a, t23a, 0xDD),
          _mm512_shuffle_i64x2(t01b, t23b, 0x88), _mm512_shuffle_i64x2(t01b, t23b, 0xDD)};
#pragma GCC unroll 2
      for (int cc = 0; cc < 2; ++cc) {
        const int c = 2 * h + cc;
        const __m512i lo0 = _mm512_and_si512(z[2 * cc], m4);
        const __m512i lo1 = _mm512_and_si512(z[2 * cc + 1], m4);
        const __m512i hi0 = _mm512_and_si512(_mm512_srli_epi16(z[2 * cc], 4), m4);
        const __m512i hi1 = _mm512_and_si512(_mm512_srli_epi16(z[2 * cc + 1], 4), m4);
        // 16-bit lanes 0..3 of each row's 128-bit lane: sc[2c], lanes 4..7: sc[2c+1].
        const __m512i scp = _mm512_shuffle_epi8(sc16, scale_pick[c]);
        __m512i mt[4];
#pragma GCC unroll 4
        for (int t = 0; t < 4; ++t) {
          const int8_t* xq = xs.Qs(t) + 64 * c;
          const __m512i sl = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(zero, lo0, Bcast16(xq)), lo1,
                                                 Bcast16(xq + 16));
          const __m512i sh = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(zero, hi0, Bcast16(xq + 32)),
                                                 hi1, Bcast16(xq + 48));
          // Packed to 16 bits (exact), [sl(r, 0..3), sh(r, 0..3)] per row, then scaled and
          // added in pairs: lanes (r, e) sum to sc[2c] S(2c) + sc[2c+1] S(2c+1).
          mt[t] = _mm512_madd_epi16(_mm512_packs_epi32(sl, sh), scp);
        }
        const __m512i s = SumLanesPerRow(mt[0], mt[1], mt[2], mt[3]);
        const __m512i mins = _mm512_madd_epi16(BcastDwordInLanes(mn16, c), xs.SumPairs(c));
        acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), d, acc);
        accm = _mm512_fmadd_ps(_mm512_cvtepi32_ps(mins), dm, accm);
      }
    }
  }
  alignas(64) float out[16];
  _mm512_store_ps(out, _mm512_sub_ps(acc, accm));
  for (int t = 0; t < nx; ++t)
    for (int r = 0; r < nw; ++r) y[t * ys + r] = out[4 * r + t];
}

}  // namespace

void TileQ4_KRepackGemm(int64_t n, const void* w, size_t ws, int nw, const void* x, size_t xs,
                        int nx, float* y, size_t ys) {
  Tile(n, w, ws, nw, PlainX(x, xs, nx), nx, y, ys);
}

size_t Q4_KTileXBytes(int64_t n) { return static_cast<size_t>(n / kQK_K) * kPrepBytes; }

void Q4_KPrepareTileX(const void* x, size_t xs, int nx, void* dst, int64_t n) {
  uint8_t* out = static_cast<uint8_t*>(dst);
  PlainX src(x, xs, nx);
  for (int64_t i = 0; i < n / kQK_K; ++i, out += kPrepBytes) {
    src.Start(i);
    for (int t = 0; t < 4; ++t) std::memcpy(out + t * kQK_K, src.Qs(t), kQK_K);
    for (int c = 0; c < 4; ++c) _mm512_store_si512(out + kPrepQs + 64 * c, src.SumPairs(c));
    _mm512_store_ps(out + kPrepQs + kPrepPairs, src.Scales());
  }
}

void Q4_KPreparedTile(int64_t n, const void* w, size_t ws, int nw, const void* x, size_t xs, int nx,
                      float* y, size_t ys) {
  (void)xs;  // one group
  Tile(n, w, ws, nw, PreparedX(x), nx, y, ys);
}

}  // namespace strata::kernels::internal::lowbit_avx512
