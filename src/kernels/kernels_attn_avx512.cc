// AVX-512 attention kernels: per-query attention over the f16 KV cache (llama.cpp's CPU flash
// attention order) and the tiled prompt attention; bit-identical to their scalar twins.
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "base/fp16.h"
#include "kernels/avx512_lanes.h"
#include "kernels/kernels.h"
#include "kernels/kernels_impl.h"
#include "kernels/x86_reduce.h"

namespace strata::kernels::avx512 {
namespace {

// Same algorithm as ref::Attention (llama.cpp's CPU flash attention), 16 lanes at a time.
__m512 RoundF16(__m512 x) {
  return _mm512_cvtph_ps(_mm512_cvtps_ph(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
}

// q.k in the order of ref's AttnScoreDot (llama.cpp's f16 dot).
inline float AttnScoreDot(const uint16_t* k, const float* q16, int n) {
  const int np = n & ~63;
  __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
  for (int i = 0; i < np; i += 64) {
    a0 = _mm512_fmadd_ps(LoadF16::Load(k, i), _mm512_loadu_ps(q16 + i), a0);
    a1 = _mm512_fmadd_ps(LoadF16::Load(k, i + 16), _mm512_loadu_ps(q16 + i + 16), a1);
    a2 = _mm512_fmadd_ps(LoadF16::Load(k, i + 32), _mm512_loadu_ps(q16 + i + 32), a2);
    a3 = _mm512_fmadd_ps(LoadF16::Load(k, i + 48), _mm512_loadu_ps(q16 + i + 48), a3);
  }
  double sum = _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a2), _mm512_add_ps(a1, a3)));
  for (int i = np; i < n; ++i) sum += static_cast<double>(fp16_to_f32(k[i]) * q16[i]);
  return static_cast<float>(sum);
}

// NH query heads (1 or 2) that share one KV head, head_dim = 16 * NV: per head the same
// operations as the generic loop below, arranged so that the V accumulators stay in registers
// and the two heads' dependency chains overlap. Keys go in chunks: (a) their scores (each K
// vector converted once for both heads), (b) the scalar online-softmax steps (running max, the
// exp calls, the sum) recording each key's rescale factor and weight, (c) the V accumulation
// (each V vector converted once). No call inside (a) or (c), so nothing spills.
template <int NV, int NH>
void AttentionHeadsFixed(const float* const* qh, const uint16_t* k, const uint16_t* v, int64_t n_kv,
                         int64_t kv_stride, float scale, float* const* oh) {
  constexpr int kChunk = 64;
  alignas(64) float q16[NH][16 * NV];
  __m512 acc[NH][NV];
#pragma GCC unroll 2
  for (int h = 0; h < NH; ++h)
    for (int i = 0; i < NV; ++i) {
      _mm512_store_ps(q16[h] + 16 * i, RoundF16(_mm512_loadu_ps(qh[h] + 16 * i)));
      acc[h][i] = _mm512_setzero_ps();
    }
  float mx[NH], sum[NH];
#pragma GCC unroll 2
  for (int h = 0; h < NH; ++h) {
    mx[h] = -INFINITY;
    sum[h] = 0.0f;
  }
  float score[NH][kChunk], rescale[NH][kChunk], weight[NH][kChunk];
  bool raised[NH][kChunk];
  for (int64_t j0 = 0; j0 < n_kv; j0 += kChunk) {
    const int m = static_cast<int>(std::min<int64_t>(kChunk, n_kv - j0));
    for (int jj = 0; jj < m; ++jj) {
      const uint16_t* kj = k + (j0 + jj) * kv_stride;
      if constexpr (NV % 4 != 0) {  // AttnScoreDot's scalar tail: no shared loads
#pragma GCC unroll 2
        for (int h = 0; h < NH; ++h) score[h][jj] = AttnScoreDot(kj, q16[h], 16 * NV) * scale;
        continue;
      }
      // AttnScoreDot's order for each head: 4 accumulators over the 64-element steps.
      __m512 a[NH][4];
#pragma GCC unroll 2
      for (int h = 0; h < NH; ++h)
#pragma GCC unroll 4
        for (int u = 0; u < 4; ++u) a[h][u] = _mm512_setzero_ps();
#pragma GCC unroll 8
      for (int i = 0; i < NV; ++i) {
        const __m512 kv = LoadF16::Load(kj, 16 * i);
#pragma GCC unroll 2
        for (int h = 0; h < NH; ++h)
          a[h][i % 4] = _mm512_fmadd_ps(kv, _mm512_load_ps(q16[h] + 16 * i), a[h][i % 4]);
      }
#pragma GCC unroll 2
      for (int h = 0; h < NH; ++h) {
        const double d = _mm512_reduce_add_ps(
            _mm512_add_ps(_mm512_add_ps(a[h][0], a[h][2]), _mm512_add_ps(a[h][1], a[h][3])));
        score[h][jj] = static_cast<float>(d) * scale;
      }
    }
    for (int jj = 0; jj < m; ++jj) {
#pragma GCC unroll 2
      for (int h = 0; h < NH; ++h) {
        const float s = score[h][jj];
        float ms = 1.0f, vs = 1.0f;
        raised[h][jj] = s > mx[h];
        if (raised[h][jj]) {
          ms = std::exp(mx[h] - s);
          mx[h] = s;
        } else {
          vs = std::exp(s - mx[h]);
        }
        sum[h] = sum[h] * ms + vs;
        rescale[h][jj] = ms;
        weight[h][jj] = vs;
      }
    }
    for (int jj = 0; jj < m; ++jj) {
#pragma GCC unroll 2
      for (int h = 0; h < NH; ++h) {
        if (raised[h][jj]) {
          const __m512 vms = _mm512_set1_ps(rescale[h][jj]);
#pragma GCC unroll 8
          for (int i = 0; i < NV; ++i) acc[h][i] = RoundF16(_mm512_mul_ps(acc[h][i], vms));
        }
      }
      const uint16_t* vj = v + (j0 + jj) * kv_stride;
      __m512 vvs[NH];
#pragma GCC unroll 2
      for (int h = 0; h < NH; ++h) vvs[h] = _mm512_set1_ps(weight[h][jj]);
#pragma GCC unroll 8
      for (int i = 0; i < NV; ++i) {
        const __m512 vv = LoadF16::Load(vj, 16 * i);
#pragma GCC unroll 2
        for (int h = 0; h < NH; ++h) acc[h][i] = RoundF16(_mm512_fmadd_ps(vv, vvs[h], acc[h][i]));
      }
    }
  }
#pragma GCC unroll 2
  for (int h = 0; h < NH; ++h) {
    const __m512 inv = _mm512_set1_ps(sum[h] == 0.0f ? 0.0f : 1.0f / sum[h]);
    for (int i = 0; i < NV; ++i) _mm512_storeu_ps(oh[h] + 16 * i, _mm512_mul_ps(acc[h][i], inv));
  }
}

using AttentionHeadsFn = void (*)(const float* const*, const uint16_t*, const uint16_t*, int64_t,
                                  int64_t, float, float* const*);
template <int NH>
constexpr AttentionHeadsFn kAttentionFixed[] = {
    AttentionHeadsFixed<1, NH>, AttentionHeadsFixed<2, NH>, AttentionHeadsFixed<3, NH>,
    AttentionHeadsFixed<4, NH>, AttentionHeadsFixed<5, NH>, AttentionHeadsFixed<6, NH>,
    AttentionHeadsFixed<7, NH>, AttentionHeadsFixed<8, NH>};

}  // namespace

void Attention(const float* q, const uint16_t* k, const uint16_t* v, int64_t n_kv,
               int64_t kv_stride, int n_heads, int n_kv_heads, int head_dim, float scale,
               float* out, float* scratch) {
  (void)scratch;
  if (head_dim % 16 == 0 && head_dim / 16 >= 1 && head_dim / 16 <= 8) {
    // Query heads in pairs where two share a KV head.
    const int group = n_heads / n_kv_heads;
    const int nv = head_dim / 16 - 1;
    for (int h = 0; h < n_heads;) {
      const int64_t col = static_cast<int64_t>(h / group) * head_dim;
      const int nh = (h % group + 1 < group) ? 2 : 1;
      const float* qh[2] = {q + static_cast<int64_t>(h) * head_dim,
                            q + static_cast<int64_t>(h + nh - 1) * head_dim};
      float* oh[2] = {out + static_cast<int64_t>(h) * head_dim,
                      out + static_cast<int64_t>(h + nh - 1) * head_dim};
      (nh == 2 ? kAttentionFixed<2> : kAttentionFixed<1>)[nv](qh, k + col, v + col, n_kv, kv_stride,
                                                              scale, oh);
      h += nh;
    }
    return;
  }
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
      const float s = AttnScoreDot(k + j * kv_stride + col, q16, head_dim) * scale;
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

namespace {

// acc[a][0..16*ND) += sum over keys t of w[a][t] * v[t][0..16*ND) for 4 rows a, a sequential
// fma chain over t per element (w rows of 64, v and acc rows of hd floats).
template <int ND>
inline void TiledValueBlock(const float* w, const float* v, int n, int hd, float* acc) {
  __m512 o[4][ND];
#pragma GCC unroll 4
  for (int a = 0; a < 4; ++a)
#pragma GCC unroll 4
    for (int c = 0; c < ND; ++c) o[a][c] = _mm512_load_ps(acc + a * hd + 16 * c);
  for (int t = 0; t < n; ++t) {
    __m512 vv[ND];
#pragma GCC unroll 4
    for (int c = 0; c < ND; ++c) vv[c] = _mm512_load_ps(v + t * hd + 16 * c);
#pragma GCC unroll 4
    for (int a = 0; a < 4; ++a) {
      const __m512 wa = _mm512_set1_ps(w[a * 64 + t]);
#pragma GCC unroll 4
      for (int c = 0; c < ND; ++c) o[a][c] = _mm512_fmadd_ps(vv[c], wa, o[a][c]);
    }
  }
#pragma GCC unroll 4
  for (int a = 0; a < 4; ++a)
#pragma GCC unroll 4
    for (int c = 0; c < ND; ++c) _mm512_store_ps(acc + a * hd + 16 * c, o[a][c]);
}

// kernels::AttentionTiled (the order of ref::AttentionTiled, llama.cpp's tiled flash
// attention) for up to 64 query rows of one head, head_dim = 16 * NV. Per key tile: the K tile
// converted and transposed once (keys along the vector lanes), scores as register-tiled
// 4 rows x 64 keys fma chains over the head dimension, the per-row softmax steps, then values
// as 4 rows x 64 dims fma chains over the tile's keys into the f32 accumulators.
template <int NV>
void AttentionTiledFixed(const float* q, int64_t q_stride, const int32_t* n_vis, int n_q,
                         const uint16_t* k, const uint16_t* v, int64_t kv_stride, float scale,
                         float* out, int64_t out_stride, float* scratch) {
  constexpr int kTile = 64, kHd = 16 * NV;
  float* base = scratch + (16 - reinterpret_cast<uintptr_t>(scratch) / 4 % 16) % 16;
  float* acc = base;               // [64, kHd] value accumulators
  float* kq = acc + kTile * kHd;   // [64, 64] scores, then weights
  float* kt = kq + kTile * kTile;  // [kHd, 64] K tile, transposed
  float* vt = kt + kHd * kTile;    // [64, kHd] V tile
  float m[kTile], sum[kTile];
  bool live[kTile];
  int32_t max_vis = 0;
  const int n_q4 = (n_q + 3) / 4 * 4;  // rows padded to groups of 4 (padding rows unused)
  for (int i = 0; i < n_q4; ++i) {
    if (i < n_q) {
      m[i] = -INFINITY;
      sum[i] = 0.0f;
      max_vis = std::max(max_vis, n_vis[i]);
    }
    for (int d = 0; d < kHd; d += 16) _mm512_store_ps(acc + i * kHd + d, _mm512_setzero_ps());
  }
  for (int64_t ic = 0; ic < max_vis; ic += kTile) {
    const int n = static_cast<int>(std::min<int64_t>(kTile, max_vis - ic));
    for (int t = 0; t < kTile; ++t) {
      if (t < n) {
        const uint16_t* kr = k + (ic + t) * kv_stride;
        const uint16_t* vr = v + (ic + t) * kv_stride;
        for (int d = 0; d < kHd; d += 16) {
          alignas(64) float tmp[16];
          _mm512_store_ps(tmp, LoadF16::Load(kr, d));
          for (int e = 0; e < 16; ++e) kt[(d + e) * kTile + t] = tmp[e];
          _mm512_store_ps(vt + t * kHd + d, LoadF16::Load(vr, d));
        }
      } else {
        for (int d = 0; d < kHd; ++d) kt[d * kTile + t] = 0.0f;
        for (int d = 0; d < kHd; d += 16) _mm512_store_ps(vt + t * kHd + d, _mm512_setzero_ps());
      }
    }
    // Scores of 4 rows at a time: per (row, key) a sequential fma chain over d.
    for (int i0 = 0; i0 < n_q4; i0 += 4) {
      __m512 s[4][4];
#pragma GCC unroll 4
      for (auto& row : s)
#pragma GCC unroll 4
        for (__m512& v : row) v = _mm512_setzero_ps();
      const float* qr[4];
      for (int a = 0; a < 4; ++a) qr[a] = q + std::min(i0 + a, n_q - 1) * q_stride;
      for (int d = 0; d < kHd; ++d) {
        const float* kd = kt + d * kTile;
        const __m512 k0 = _mm512_load_ps(kd), k1 = _mm512_load_ps(kd + 16);
        const __m512 k2 = _mm512_load_ps(kd + 32), k3 = _mm512_load_ps(kd + 48);
#pragma GCC unroll 4
        for (int a = 0; a < 4; ++a) {
          const __m512 qa = _mm512_set1_ps(qr[a][d]);
          s[a][0] = _mm512_fmadd_ps(k0, qa, s[a][0]);
          s[a][1] = _mm512_fmadd_ps(k1, qa, s[a][1]);
          s[a][2] = _mm512_fmadd_ps(k2, qa, s[a][2]);
          s[a][3] = _mm512_fmadd_ps(k3, qa, s[a][3]);
        }
      }
      const __m512 sc = _mm512_set1_ps(scale), zero = _mm512_setzero_ps();
#pragma GCC unroll 4
      for (int a = 0; a < 4; ++a) {
        if (i0 + a >= n_q) break;
        // Keys >= n_vis of this row are masked: -inf, the others + the mask's 0.
        const int64_t vis = std::min<int64_t>(kTile, std::max<int64_t>(0, n_vis[i0 + a] - ic));
#pragma GCC unroll 4
        for (int c = 0; c < 4; ++c) {
          const __mmask16 ok = Mask16(std::min<int64_t>(16, std::max<int64_t>(0, vis - 16 * c)));
          const __m512 x = _mm512_add_ps(_mm512_mul_ps(s[a][c], sc), zero);
          _mm512_store_ps(kq + (i0 + a) * kTile + 16 * c,
                          _mm512_mask_blend_ps(ok, _mm512_set1_ps(-INFINITY), x));
        }
      }
    }
    // Per row: running max, rescale, weights (polynomial exp) and their sum.
    for (int i = 0; i < n_q; ++i) {
      float* row = kq + i * kTile;
      const __m512 r0 = _mm512_load_ps(row), r1 = _mm512_load_ps(row + 16);
      const __m512 r2 = _mm512_load_ps(row + 32), r3 = _mm512_load_ps(row + 48);
      const float tile_max =
          _mm512_reduce_max_ps(_mm512_max_ps(_mm512_max_ps(r0, r1), _mm512_max_ps(r2, r3)));
      live[i] = tile_max != -INFINITY;
      if (!live[i]) {
        for (int c = 0; c < kTile; c += 16) _mm512_store_ps(row + c, _mm512_setzero_ps());
        continue;
      }
      const float m_new = std::fmax(m[i], tile_max);
      if (m_new > m[i]) {
        const float ms = std::exp(m[i] - m_new);
        const __m512 vms = _mm512_set1_ps(ms);
        for (int d = 0; d < kHd; d += 16)
          _mm512_store_ps(acc + i * kHd + d, _mm512_mul_ps(_mm512_load_ps(acc + i * kHd + d), vms));
        sum[i] *= ms;
      }
      m[i] = m_new;
      const __m512 mv = _mm512_set1_ps(m_new);
      double tile_sum = 0.0;
      for (int c = 0; c < kTile; c += 16) {
        const __m512 w = ExpPoly(_mm512_sub_ps(_mm512_load_ps(row + c), mv));
        _mm512_store_ps(row + c, w);
        tile_sum += static_cast<double>(_mm512_reduce_add_ps(w));
      }
      sum[i] = static_cast<float>(static_cast<double>(sum[i]) + tile_sum);
    }
    // Values of 4 rows x up to 64 dims at a time: per (row, dim) a sequential fma chain over
    // the keys. Rows n_q..n_q4-1 are padding (zero weights, never stored out).
    for (int i = n_q; i < n_q4; ++i)
      for (int c = 0; c < kTile; c += 16) _mm512_store_ps(kq + i * kTile + c, _mm512_setzero_ps());
    for (int i0 = 0; i0 < n_q4; i0 += 4) {
      for (int d0 = 0; d0 + 64 <= kHd; d0 += 64)
        TiledValueBlock<4>(kq + i0 * kTile, vt + d0, n, kHd, acc + i0 * kHd + d0);
      if constexpr (NV % 4 != 0)
        TiledValueBlock<NV % 4>(kq + i0 * kTile, vt + kHd - 16 * (NV % 4), n, kHd,
                                acc + i0 * kHd + kHd - 16 * (NV % 4));
    }
  }
  for (int i = 0; i < n_q; ++i) {
    const __m512 inv = _mm512_set1_ps(sum[i] == 0.0f ? 0.0f : 1.0f / sum[i]);
    for (int d = 0; d < kHd; d += 16)
      _mm512_storeu_ps(out + i * out_stride + d,
                       _mm512_mul_ps(_mm512_load_ps(acc + i * kHd + d), inv));
  }
  (void)live;
}

}  // namespace

void AttentionTiled(const float* q, int64_t q_stride, const int32_t* n_vis, int n_q,
                    const uint16_t* k, const uint16_t* v, int64_t kv_stride, int head_dim,
                    float scale, float* out, int64_t out_stride, float* scratch) {
  using Fn = void (*)(const float*, int64_t, const int32_t*, int, const uint16_t*, const uint16_t*,
                      int64_t, float, float*, int64_t, float*);
  static constexpr Fn kFixed[] = {AttentionTiledFixed<1>, AttentionTiledFixed<2>,
                                  AttentionTiledFixed<3>, AttentionTiledFixed<4>,
                                  AttentionTiledFixed<5>, AttentionTiledFixed<6>,
                                  AttentionTiledFixed<7>, AttentionTiledFixed<8>};
  kFixed[head_dim / 16 - 1](q, q_stride, n_vis, n_q, k, v, kv_stride, scale, out, out_stride,
                            scratch);
}

namespace {

// Split-KV chunks read one head's slice of each cached position (e.g. 256 of 512 bytes): a
// strided walk over 4 KiB pages that the hardware prefetchers follow too late (measured: the
// first load of each row stalls on memory). So each row's walk asks for the row this many
// positions ahead; computed as an integer (it may lie past the cache: a prefetch never faults).
constexpr int64_t kKvPrefetchRows = 8;

// The `bytes` from the row `ahead` rows of `row_bytes` after `row`.
inline void PrefetchAhead(const uint8_t* row, size_t row_bytes, int64_t ahead, int bytes) {
  const uintptr_t p = reinterpret_cast<uintptr_t>(row) + ahead * row_bytes;
  // NOLINTBEGIN(performance-no-int-to-ptr)
  for (int b = 0; b < bytes; b += 64)
    _mm_prefetch(reinterpret_cast<const char*>(p + b), _MM_HINT_T0);
  // NOLINTEND(performance-no-int-to-ptr)
}

inline void PrefetchRow(const uint8_t* row, size_t row_bytes, int bytes) {
  PrefetchAhead(row, row_bytes, kKvPrefetchRows, bytes);
}

// The sums of 16 vectors' lanes, one per vector, in the fold order x_i + x_{i+8}, then
// + x_{i+4}, + x_{i+2}, + x_{i+1}: result lane j is the sum of v[j].
inline __m512 FoldSum16(const __m512* v) {
  __m512 r1[8], r2[4], r3[2];
  for (int m = 0; m < 8; ++m)
    r1[m] = _mm512_add_ps(_mm512_shuffle_f32x4(v[2 * m], v[2 * m + 1], 0x44),
                          _mm512_shuffle_f32x4(v[2 * m], v[2 * m + 1], 0xEE));
  for (int m = 0; m < 4; ++m)
    r2[m] = _mm512_add_ps(_mm512_shuffle_f32x4(r1[2 * m], r1[2 * m + 1], 0x88),
                          _mm512_shuffle_f32x4(r1[2 * m], r1[2 * m + 1], 0xDD));
  for (int m = 0; m < 2; ++m) {
    const __m512d e = _mm512_castps_pd(r2[2 * m]), f = _mm512_castps_pd(r2[2 * m + 1]);
    r3[m] = _mm512_add_ps(_mm512_castpd_ps(_mm512_unpacklo_pd(e, f)),
                          _mm512_castpd_ps(_mm512_unpackhi_pd(e, f)));
  }
  const __m512 r =
      _mm512_add_ps(_mm512_shuffle_ps(r3[0], r3[1], 0x88), _mm512_shuffle_ps(r3[0], r3[1], 0xDD));
  // Lane 4b + t holds vector b + 4t.
  const __m512i idx = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
  return _mm512_permutexvar_ps(idx, r);
}

// Scores of one split-KV chunk: s[h * kSplitKvChunk + j] = (q16[h] . k[j]) * scale, each dot
// product in 16 lanes (a sequential fma chain over the head dimension per lane), folded.
template <int NV>
void SplitScores(const float* q16, int nh, const uint8_t* k, size_t k_row, int64_t n_kv,
                 float scale, float* s) {
  constexpr int kHd = 16 * NV;
  alignas(64) float lanes[kMaxAttnHeads][16][16];
  const __m512 sc = _mm512_set1_ps(scale);
  for (int64_t j0 = 0; j0 < n_kv; j0 += 16) {
    const int nj = static_cast<int>(std::min<int64_t>(16, n_kv - j0));
    for (int jj = 0; jj < 16; ++jj) {
      if (jj >= nj) {
        for (int h = 0; h < nh; ++h) _mm512_store_ps(lanes[h][jj], _mm512_setzero_ps());
        continue;
      }
      const uint8_t* kr = k + static_cast<size_t>(j0 + jj) * k_row;
      PrefetchRow(kr, k_row, 32 * NV);
      __m512 kv[NV];
#pragma GCC unroll 8
      for (int i = 0; i < NV; ++i) kv[i] = LoadF16::Load(kr, 16 * i);
      for (int h = 0; h < nh; ++h) {
        const float* qh = q16 + h * kHd;
        __m512 acc = _mm512_mul_ps(kv[0], _mm512_load_ps(qh));
#pragma GCC unroll 8
        for (int i = 1; i < NV; ++i) acc = _mm512_fmadd_ps(kv[i], _mm512_load_ps(qh + 16 * i), acc);
        _mm512_store_ps(lanes[h][jj], acc);
      }
    }
    for (int h = 0; h < nh; ++h) {
      __m512 v[16];
      for (int jj = 0; jj < 16; ++jj) v[jj] = _mm512_load_ps(lanes[h][jj]);
      _mm512_mask_storeu_ps(s + h * kSplitKvChunk + j0, Mask16(nj),
                            _mm512_mul_ps(FoldSum16(v), sc));
    }
  }
}

// Column vector `col` (16 values) of a cached value row, as f32: F16 rows convert; Q8_0 rows
// (32-value blocks of fp16 d + 32 int8) give q * d, exact in f32 (8 bits times 11), as the
// generic path's row conversion (fma(q, d * 1, 0)) does.
// kRowBytesPerCol: bytes of a row per column vector (where to prefetch).
struct ColF16 {
  static constexpr int kRowBytesPerCol = 32;
  static __m512 Load(const uint8_t* row, int col) { return LoadF16::Load(row, 16 * col); }
};
struct ColQ8 {
  static constexpr int kRowBytesPerCol = sizeof(BlockQ8_0) / 2;
  static __m512 Load(const uint8_t* row, int col) {
    const uint8_t* blk = row + static_cast<size_t>(col / 2) * sizeof(BlockQ8_0);
    uint16_t d;
    std::memcpy(&d, blk, 2);
    const __m128i q = _mm_loadu_si128(reinterpret_cast<const __m128i*>(blk + 2 + 16 * (col % 2)));
    return _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(q)), _mm512_set1_ps(_cvtsh_ss(d)));
  }
};

// acc[h][16 c + e] = sum over keys j of w[h][j] * v[j][16 (col0 + c) + e] from 0, a sequential
// fma chain per element, for NH heads and CB vectors of columns (partial rows `stride` apart).
template <class Col, int NH, int CB>
void SplitValues(const float* w, const uint8_t* v, size_t v_row, int col0, int64_t n_kv, float* out,
                 int64_t stride) {
  __m512 acc[NH][CB];
#pragma GCC unroll 6
  for (int h = 0; h < NH; ++h)
#pragma GCC unroll 4
    for (int c = 0; c < CB; ++c) acc[h][c] = _mm512_setzero_ps();
  const int row_bytes = Col::kRowBytesPerCol * CB;
  for (int64_t j = 0; j < n_kv; ++j) {
    const uint8_t* vr = v + static_cast<size_t>(j) * v_row;
    PrefetchRow(vr + Col::kRowBytesPerCol * col0, v_row, row_bytes);
    __m512 vv[CB];
#pragma GCC unroll 4
    for (int c = 0; c < CB; ++c) vv[c] = Col::Load(vr, col0 + c);
#pragma GCC unroll 6
    for (int h = 0; h < NH; ++h) {
      const __m512 wh = _mm512_set1_ps(w[h * kSplitKvChunk + j]);
#pragma GCC unroll 4
      for (int c = 0; c < CB; ++c) acc[h][c] = _mm512_fmadd_ps(vv[c], wh, acc[h][c]);
    }
  }
#pragma GCC unroll 6
  for (int h = 0; h < NH; ++h)
#pragma GCC unroll 4
    for (int c = 0; c < CB; ++c) _mm512_storeu_ps(out + h * stride + 16 * c, acc[h][c]);
}

using SplitValuesFn = void (*)(const float*, const uint8_t*, size_t, int, int64_t, float*, int64_t);
template <class Col, int NH>
constexpr SplitValuesFn kSplitValuesRow[] = {SplitValues<Col, NH, 1>, SplitValues<Col, NH, 2>,
                                             SplitValues<Col, NH, 3>, SplitValues<Col, NH, 4>};
template <class Col>
constexpr const SplitValuesFn* kSplitValues[] = {kSplitValuesRow<Col, 1>, kSplitValuesRow<Col, 2>,
                                                 kSplitValuesRow<Col, 3>, kSplitValuesRow<Col, 4>,
                                                 kSplitValuesRow<Col, 5>, kSplitValuesRow<Col, 6>};

using SplitScoresFn = void (*)(const float*, int, const uint8_t*, size_t, int64_t, float, float*);
constexpr SplitScoresFn kSplitScores[] = {SplitScores<1>, SplitScores<2>, SplitScores<3>,
                                          SplitScores<4>, SplitScores<5>, SplitScores<6>,
                                          SplitScores<7>, SplitScores<8>};

// 16 rows' 32-byte blocks (rows r and r + 8 in the halves of z[r]) as 8 registers of 4-byte
// columns: lane r of out[t] = bytes 4t..4t+3 of row r.
inline void TransposeBlocks16(const __m512i* z, __m512i* out) {
  __m512i a[8], c[8];
  for (int i = 0; i < 4; ++i) {  // per 128-bit lane: dwords of rows (2i, 2i+1) interleaved
    a[2 * i] = _mm512_unpacklo_epi32(z[2 * i], z[2 * i + 1]);
    a[2 * i + 1] = _mm512_unpackhi_epi32(z[2 * i], z[2 * i + 1]);
  }
  for (int g = 0; g < 2; ++g)  // rows 4g..4g+3: c[4g + e] holds element e of each 128-bit lane
    for (int h = 0; h < 2; ++h) {
      c[4 * g + 2 * h] = _mm512_unpacklo_epi64(a[4 * g + h], a[4 * g + 2 + h]);
      c[4 * g + 2 * h + 1] = _mm512_unpackhi_epi64(a[4 * g + h], a[4 * g + 2 + h]);
    }
  // 128-bit lanes of c: [rows 0-7: dwords 0-3, 4-7; rows 8-15: dwords 0-3, 4-7]; join rows
  // 0-3 (c[e]) and 4-7 (c[4 + e]) of the same dword.
  const __m512i lo = _mm512_setr_epi32(0, 1, 2, 3, 16, 17, 18, 19, 8, 9, 10, 11, 24, 25, 26, 27);
  const __m512i hi = _mm512_setr_epi32(4, 5, 6, 7, 20, 21, 22, 23, 12, 13, 14, 15, 28, 29, 30, 31);
  for (int e = 0; e < 4; ++e) {
    out[e] = _mm512_permutex2var_epi32(c[e], lo, c[4 + e]);
    out[4 + e] = _mm512_permutex2var_epi32(c[e], hi, c[4 + e]);
  }
}

}  // namespace

// Scores of one split-KV chunk for Q8_0 keys, 16 keys at a time (ref::SplitScoresQ8's
// operations): per block the exact integer dot product of key and query quants, by vpdpbusd
// over the keys transposed into 4-byte columns (a lane per key; in the offset form
// (k + 128) . q - 128 sum(q), as vpdpbusd wants an unsigned operand), then per key
// acc = fma(dk * dq, float(dot), acc) block after block, times scale.
void SplitScoresQ8(const BlockQ8_0* qx, int nh, int nb, const uint8_t* k, size_t k_row,
                   int64_t n_kv, float scale, float* s) {
  constexpr int kMaxBlocks = 128 / 32;  // head_dim <= 128 on this path
  int32_t corr[kMaxAttnHeads][kMaxBlocks];
  float dq[kMaxAttnHeads][kMaxBlocks];
  for (int h = 0; h < nh; ++h)
    for (int b = 0; b < nb; ++b) {
      int32_t sum = 0;
      for (int8_t v : qx[h * nb + b].qs) sum += v;
      corr[h][b] = -128 * sum;
      dq[h][b] = fp16_to_f32(qx[h * nb + b].d);
    }
  const __m512i flip = _mm512_set1_epi8(static_cast<char>(0x80));
  for (int64_t j0 = 0; j0 < n_kv; j0 += 16) {
    const int nr = static_cast<int>(std::min<int64_t>(16, n_kv - j0));
    alignas(64) int32_t off[16];  // byte offset of each key row (a tail repeats the last one)
    for (int r = 0; r < 16; ++r)
      off[r] =
          static_cast<int32_t>(static_cast<size_t>(std::min<int64_t>(j0 + r, n_kv - 1)) * k_row);
    const __m512i offv = _mm512_load_si512(off);
    for (int r = 0; r < 16; ++r)  // the next 16 keys (the loads below would wait on memory)
      PrefetchAhead(k + static_cast<size_t>(j0 + r) * k_row, k_row, 16,
                    nb * static_cast<int>(sizeof(BlockQ8_0)));
    __m512 acc[kMaxAttnHeads];
    for (int h = 0; h < nh; ++h) acc[h] = _mm512_setzero_ps();
    for (int b = 0; b < nb; ++b) {
      const size_t bo = static_cast<size_t>(b) * sizeof(BlockQ8_0);
      __m512i z[8], col[8];
      for (int r = 0; r < 8; ++r)
        z[r] = _mm512_inserti64x4(
            _mm512_castsi256_si512(
                _mm256_loadu_si256(reinterpret_cast<const __m256i*>(k + off[r] + bo + 2))),
            _mm256_loadu_si256(reinterpret_cast<const __m256i*>(k + off[r + 8] + bo + 2)), 1);
      TransposeBlocks16(z, col);
      for (__m512i& c : col) c = _mm512_xor_si512(c, flip);
      // The keys' scales: 4 bytes from each block start, the low 2 are the fp16 d.
      const __m512i dw = _mm512_i32gather_epi32(
          _mm512_add_epi32(offv, _mm512_set1_epi32(static_cast<int32_t>(bo))), k, 1);
      const __m512 dk = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(dw));
      for (int h = 0; h < nh; ++h) {
        const auto* q4 = reinterpret_cast<const int32_t*>(qx[h * nb + b].qs);
        __m512i dot = _mm512_set1_epi32(corr[h][b]);
#pragma GCC unroll 8
        for (int t = 0; t < 8; ++t) {
          int32_t qt;
          std::memcpy(&qt, q4 + t, 4);
          dot = _mm512_dpbusd_epi32(dot, col[t], _mm512_set1_epi32(qt));
        }
        acc[h] = _mm512_fmadd_ps(_mm512_mul_ps(dk, _mm512_set1_ps(dq[h][b])),
                                 _mm512_cvtepi32_ps(dot), acc[h]);
      }
    }
    const __mmask16 rows = Mask16(nr);
    for (int h = 0; h < nh; ++h)
      _mm512_mask_storeu_ps(s + h * kSplitKvChunk + j0, rows,
                            _mm512_mul_ps(acc[h], _mm512_set1_ps(scale)));
  }
}

namespace {

// Per head of a chunk's scores (scratch, kSplitKvChunk apart): the maximum m, the weights
// ExpPoly(s - m) in place and their sum, into the partial's last two floats.
void ChunkWeights(float* scratch, int nh, int64_t n_kv, int hd, float* partial) {
  const int64_t stride = AttentionPartialStride(hd);
  for (int h = 0; h < nh; ++h) {
    float* s = scratch + h * kSplitKvChunk;
    __m512 mx = _mm512_set1_ps(-INFINITY);
    for (int64_t j = 0; j < n_kv; j += 16)
      mx = _mm512_max_ps(mx, _mm512_mask_loadu_ps(_mm512_set1_ps(-INFINITY),
                                                  Mask16(std::min<int64_t>(16, n_kv - j)), s + j));
    const float m = _mm512_reduce_max_ps(mx);
    const __m512 mv = _mm512_set1_ps(m);
    __m512 sum = _mm512_setzero_ps();
    for (int64_t j = 0; j < n_kv; j += 16) {
      const __mmask16 ok = Mask16(std::min<int64_t>(16, n_kv - j));
      const __m512 w =
          _mm512_maskz_mov_ps(ok, ExpPoly(_mm512_sub_ps(_mm512_maskz_loadu_ps(ok, s + j), mv)));
      _mm512_mask_storeu_ps(s + j, ok, w);
      sum = _mm512_add_ps(sum, w);
    }
    partial[h * stride + hd] = m;
    partial[h * stride + hd + 1] = _mm512_reduce_add_ps(sum);
  }
}

bool FastKvType(DType t) { return t == DType::F16 || t == DType::Q8_0; }

}  // namespace

bool AttentionKvPartialFast(const KvAttention& a, const float* q, float* partial, float* scratch) {
  const int hd = a.head_dim, nh = a.n_heads;
  const bool q8 = a.k_type == DType::Q8_0 || a.v_type == DType::Q8_0;
  if (!FastKvType(a.k_type) || !FastKvType(a.v_type) || hd % (q8 ? 32 : 16) != 0 || hd < 16 ||
      hd > 128 || nh < 1 || nh > kMaxAttnHeads || a.n_kv < 1 || a.n_kv > kSplitKvChunk)
    return false;
  const int nv = hd / 16;
  const auto* k = static_cast<const uint8_t*>(a.k);
  if (a.k_type == DType::F16) {
    // The query as an F16 key's dot product sees it: rounded to f16.
    alignas(64) float q16[kMaxAttnHeads * 128];
    for (int h = 0; h < nh; ++h)
      for (int i = 0; i < nv; ++i)
        _mm512_store_ps(q16 + h * hd + 16 * i, RoundF16(_mm512_loadu_ps(q + h * hd + 16 * i)));
    kSplitScores[nv - 1](q16, nh, k, a.k_row_bytes, a.n_kv, a.scale, scratch);
  } else {
    // The queries in the dot product's activation format, by the table's own quantizer.
    const internal::TypeKernels* kt = internal::FindType(internal::Avx512Kernels(), DType::Q8_0);
    const int nb = hd / 32;
    BlockQ8_0 qx[kMaxAttnHeads * (128 / 32)];
    for (int h = 0; h < nh; ++h) kt->quantize(q + h * hd, qx + h * nb, hd);
    SplitScoresQ8(qx, nh, nb, k, a.k_row_bytes, a.n_kv, a.scale, scratch);
  }
  ChunkWeights(scratch, nh, a.n_kv, hd, partial);
  // Values: groups of up to 6 heads x up to 4 vectors of columns in registers.
  const int64_t stride = AttentionPartialStride(hd);
  const SplitValuesFn* const* table =
      a.v_type == DType::F16 ? kSplitValues<ColF16> : kSplitValues<ColQ8>;
  const auto* v = static_cast<const uint8_t*>(a.v);
  for (int h0 = 0; h0 < nh; h0 += 6) {
    const int gh = std::min(6, nh - h0);
    for (int c0 = 0; c0 < nv; c0 += 4) {
      const int gc = std::min(4, nv - c0);
      table[gh - 1][gc - 1](scratch + h0 * kSplitKvChunk, v, a.v_row_bytes, c0, a.n_kv,
                            partial + h0 * stride + 16 * c0, stride);
    }
  }
  return true;
}

// internal::MergeAttentionPartialsRef 16 output elements at a time: the same scalar maximum,
// exp and sum, and per element the same fma chain and final product.
void MergeAttentionPartials(const float* partials, int64_t n_chunks, int n_heads, int head_dim,
                            float* out) {
  const int64_t stride = AttentionPartialStride(head_dim);
  const int64_t chunk = stride * n_heads;
  for (int h = 0; h < n_heads; ++h) {
    const float* p = partials + h * stride;
    float m = -INFINITY;
    for (int64_t c = 0; c < n_chunks; ++c) m = std::fmax(m, p[c * chunk + head_dim]);
    float* o = out + static_cast<int64_t>(h) * head_dim;
    for (int i = 0; i < head_dim; i += 16)
      _mm512_mask_storeu_ps(o + i, Mask16(std::min(16, head_dim - i)), _mm512_setzero_ps());
    float sum = 0.0f;
    for (int64_t c = 0; c < n_chunks; ++c) {
      const float* pc = p + c * chunk;
      const float e = std::exp(pc[head_dim] - m);
      sum = std::fma(pc[head_dim + 1], e, sum);
      const __m512 ev = _mm512_set1_ps(e);
      for (int i = 0; i < head_dim; i += 16) {
        const __mmask16 k = Mask16(std::min(16, head_dim - i));
        _mm512_mask_storeu_ps(
            o + i, k,
            _mm512_fmadd_ps(_mm512_maskz_loadu_ps(k, pc + i), ev, _mm512_maskz_loadu_ps(k, o + i)));
      }
    }
    const __m512 inv = _mm512_set1_ps(sum == 0.0f ? 0.0f : 1.0f / sum);
    for (int i = 0; i < head_dim; i += 16) {
      const __mmask16 k = Mask16(std::min(16, head_dim - i));
      _mm512_mask_storeu_ps(o + i, k, _mm512_mul_ps(_mm512_maskz_loadu_ps(k, o + i), inv));
    }
  }
}

}  // namespace strata::kernels::avx512
