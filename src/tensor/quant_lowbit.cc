// Reference quantization of the 4-, 5- and 6-bit weight types (Q4_0, Q4_K, Q5_K, Q6_K) and of
// the Q8_K activation format. The algorithms are those of llama.cpp's reference quantizers
// (quantize_row_*_ref, without an importance matrix), down to the order of floating-point
// operations, so that `strata quantize` writes the same bytes as llama-quantize (checked by
// tests/conformance/llama_quantize.py against the library itself): Q4_0 scales by the signed
// element of largest magnitude; Q4_K / Q5_K fit a scale and a min per sub-block of 32 by a
// weighted least-squares search, then quantize those to 6 bits against fp16 super-scales;
// Q6_K fits a signed scale per sub-block of 16 and quantizes the scales to int8. Q8_K is
// llama.cpp's activation quantizer exactly (its results feed bit-exact dot products).
#include "tensor/quant_lowbit.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <utility>

#include "base/fp16.h"

namespace strata::internal {
namespace {

// Round half to even, as an int, for |v| < 2^22 (all the callers' ranges): adding 1.5 * 2^23
// leaves the rounded integer in the low mantissa bits. Much faster than a libm call on
// baseline x86-64, and the same results as llama.cpp's reference quantizers.
inline int NearestInt(float v) {
  const float shifted = v + 12582912.0f;
  int32_t bits;
  std::memcpy(&bits, &shifted, sizeof(bits));
  return (bits & 0x007fffff) - 0x00400000;
}

// ---- Q4_K / Q5_K sub-block fit ----------------------------------------------------------
// Fits x[i] ~ scale * L[i] - min_out with L in [0, nmax], weights w. Starts from the plain
// (max - min) / nmax grid, then tries nstep + 1 slightly different grids, each followed by a
// closed-form weighted least-squares solve for scale and offset; keeps the best weighted
// squared error. Returns the scale; *min_out receives the (non-negative) min.
float FitScaleMin(const float* x, const float* w, int n, int nmax, float rmin, float rdelta,
                  int nstep, uint8_t* L, float* min_out) {
  float lo = x[0], hi = x[0];
  float sw = 0.0f, swx = 0.0f;
  for (int i = 0; i < n; ++i) {
    lo = std::min(lo, x[i]);
    hi = std::max(hi, x[i]);
    sw += w[i];
    swx += w[i] * x[i];
  }
  lo = std::min(lo, 0.0f);
  if (hi == lo) {
    std::fill(L, L + n, 0);
    *min_out = -lo;
    return 0.0f;
  }
  float inv = static_cast<float>(nmax) / (hi - lo);
  float scale = 1.0f / inv;
  // x ~ scale * L + offset. As in llama.cpp, the offset of the best fit so far also anchors
  // the grids tried after it (not only the initial minimum).
  float offset = lo;
  float best = 0.0f;
  for (int i = 0; i < n; ++i) {
    L[i] = static_cast<uint8_t>(std::clamp(NearestInt(inv * (x[i] - offset)), 0, nmax));
    const float e = scale * L[i] + offset - x[i];
    best += w[i] * (e * e);  // w * e^2 in this order, as llama.cpp rounds it
  }
  uint8_t cand[256];
  for (int s = 0; s <= nstep; ++s) {
    inv = (rmin + rdelta * static_cast<float>(s) + static_cast<float>(nmax)) / (hi - offset);
    float sl = 0.0f, sll = 0.0f, sxl = 0.0f;
    for (int i = 0; i < n; ++i) {
      const int l = std::clamp(NearestInt(inv * (x[i] - offset)), 0, nmax);
      cand[i] = static_cast<uint8_t>(l);
      sl += w[i] * l;
      sll += w[i] * l * l;
      sxl += w[i] * l * x[i];
    }
    const float det = sw * sll - sl * sl;
    if (det <= 0.0f) continue;
    float cs = (sw * sxl - swx * sl) / det;
    float co = (sll * swx - sl * sxl) / det;
    if (co > 0.0f) {  // the offset may only lower values: refit the scale alone
      co = 0.0f;
      cs = sxl / sll;
    }
    float err = 0.0f;
    for (int i = 0; i < n; ++i) {
      const float e = cs * cand[i] + co - x[i];
      err += w[i] * (e * e);
    }
    if (err < best) {
      best = err;
      scale = cs;
      offset = co;
      std::copy(cand, cand + n, L);
    }
  }
  *min_out = -offset;
  return scale;
}

// Shared by Q4_K and Q5_K: fits the 8 sub-blocks, packs the 6-bit scales/mins and the fp16
// super-scales, and returns the final levels L[256] in [0, nmax].
void QuantizeKSuperBlock(const float* x, int nmax, float rmin, float rdelta, int nstep,
                         uint16_t* d_out, uint16_t* dmin_out, uint8_t* packed, uint8_t* L) {
  float scales[8], mins[8], w[32];
  float max_scale = 0.0f, max_min = 0.0f;
  for (int j = 0; j < 8; ++j) {
    const float* xj = x + 32 * j;
    float ss = 0.0f;
    for (int l = 0; l < 32; ++l) ss += xj[l] * xj[l];
    const float rms = std::sqrt(ss / 32.0f);
    for (int l = 0; l < 32; ++l) w[l] = rms + std::fabs(xj[l]);
    scales[j] = FitScaleMin(xj, w, 32, nmax, rmin, rdelta, nstep, L + 32 * j, &mins[j]);
    max_scale = std::max(max_scale, scales[j]);
    max_min = std::max(max_min, mins[j]);
  }
  const float inv_scale = max_scale > 0.0f ? 63.0f / max_scale : 0.0f;
  const float inv_min = max_min > 0.0f ? 63.0f / max_min : 0.0f;
  std::memset(packed, 0, 12);
  for (int j = 0; j < 8; ++j) {
    // Truncate to 8 bits before the clamp (a negative level wraps and clamps to 63), as the
    // reference does.
    const uint8_t ls =
        std::min<uint8_t>(63, static_cast<uint8_t>(NearestInt(inv_scale * scales[j])));
    const uint8_t lm = std::min<uint8_t>(63, static_cast<uint8_t>(NearestInt(inv_min * mins[j])));
    if (j < 4) {
      packed[j] = static_cast<uint8_t>(packed[j] | ls);
      packed[j + 4] = static_cast<uint8_t>(packed[j + 4] | lm);
    } else {
      packed[j + 4] = static_cast<uint8_t>((ls & 0xF) | ((lm & 0xF) << 4));
      packed[j - 4] = static_cast<uint8_t>(packed[j - 4] | ((ls >> 4) << 6));
      packed[j] = static_cast<uint8_t>(packed[j] | ((lm >> 4) << 6));
    }
  }
  *d_out = f32_to_fp16(max_scale / 63.0f);
  *dmin_out = f32_to_fp16(max_min / 63.0f);
  // Re-quantize against the scales as they will be decoded.
  const float d = fp16_to_f32(*d_out), dmin = fp16_to_f32(*dmin_out);
  for (int j = 0; j < 8; ++j) {
    uint8_t sc, m;
    UnpackScaleMinK4(packed, j, &sc, &m);
    const float ds = d * sc;
    if (ds == 0.0f) continue;
    const float dm = dmin * m;
    for (int l = 0; l < 32; ++l)
      L[32 * j + l] =
          static_cast<uint8_t>(std::clamp(NearestInt((x[32 * j + l] + dm) / ds), 0, nmax));
  }
}

// Q6_K sub-block fit: signed symmetric levels in [-nmax, nmax - 1] with weights x^2; the
// scale of the plain grid is refined by a least-squares solve over 18 nearby grids.
float FitSymmetric(const float* x, int n, int nmax, int8_t* L) {
  float amax = 0.0f, max = 0.0f;
  for (int i = 0; i < n; ++i) {
    if (std::fabs(x[i]) > amax) {
      amax = std::fabs(x[i]);
      max = x[i];
    }
  }
  if (amax < 1e-15f) {
    std::fill(L, L + n, 0);
    return 0.0f;
  }
  auto grid = [&](float inv, int8_t* out, float* sxl, float* sll) {
    *sxl = 0.0f;
    *sll = 0.0f;
    for (int i = 0; i < n; ++i) {
      const int l = std::clamp(NearestInt(inv * x[i]), -nmax, nmax - 1);
      if (out != nullptr) out[i] = static_cast<int8_t>(l + nmax);
      const float w = x[i] * x[i];
      *sxl += w * x[i] * l;
      *sll += w * l * l;
    }
  };
  float sxl, sll;
  grid(-static_cast<float>(nmax) / max, L, &sxl, &sll);
  float scale = sll != 0.0f ? sxl / sll : 0.0f;
  float best = scale * sxl;
  for (int s = -9; s <= 9; ++s) {
    if (s == 0) continue;
    const float inv = -(static_cast<float>(nmax) + 0.1f * static_cast<float>(s)) / max;
    grid(inv, nullptr, &sxl, &sll);
    if (sll > 0.0f && sxl * sxl > best * sll) {
      grid(inv, L, &sxl, &sll);
      scale = sxl / sll;
      best = scale * sxl;
    }
  }
  return scale;
}

// Dequantizes Q4_K / Q5_K super-blocks: chunk c (64 values) of a block has two sub-blocks of
// 32 with their own scale and min; quants(block, c, l) gives the quants of value l of each.
template <typename Block, typename Quants>
void DequantizeK(const Block* x, float* y, int64_t n, Quants quants) {
  for (int64_t b = 0; b < n / kQK_K; ++b, y += kQK_K) {
    const float d = fp16_to_f32(x[b].d), dmin = fp16_to_f32(x[b].dmin);
    for (int c = 0; c < 4; ++c) {
      uint8_t sc0, m0, sc1, m1;
      UnpackScaleMinK4(x[b].scales, 2 * c, &sc0, &m0);
      UnpackScaleMinK4(x[b].scales, 2 * c + 1, &sc1, &m1);
      const float d0 = d * sc0, o0 = dmin * m0, d1 = d * sc1, o1 = dmin * m1;
      for (int l = 0; l < 32; ++l) {
        const auto [qa, qb] = quants(x[b], c, l);
        y[64 * c + l] = d0 * static_cast<float>(qa) - o0;
        y[64 * c + 32 + l] = d1 * static_cast<float>(qb) - o1;
      }
    }
  }
}

}  // namespace

void QuantizeQ4_0(const float* x, BlockQ4_0* y, int64_t n) {
  for (int64_t b = 0; b < n / 32; ++b, x += 32) {
    float amax = 0.0f, max = 0.0f;
    for (int j = 0; j < 32; ++j) {
      if (std::fabs(x[j]) > amax) {
        amax = std::fabs(x[j]);
        max = x[j];
      }
    }
    const float d = max / -8.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    y[b].d = f32_to_fp16(d);
    for (int j = 0; j < 16; ++j) {
      // Truncation of (v + 8.5) rounds half up within [0, 15].
      const int lo = std::min(15, static_cast<int>(static_cast<int8_t>(x[j] * id + 8.5f)));
      const int hi = std::min(15, static_cast<int>(static_cast<int8_t>(x[j + 16] * id + 8.5f)));
      y[b].qs[j] = static_cast<uint8_t>(lo | (hi << 4));
    }
  }
}

void DequantizeQ4_0(const BlockQ4_0* x, float* y, int64_t n) {
  for (int64_t b = 0; b < n / 32; ++b, y += 32) {
    const float d = fp16_to_f32(x[b].d);
    for (int j = 0; j < 16; ++j) {
      y[j] = static_cast<float>((x[b].qs[j] & 0xF) - 8) * d;
      y[j + 16] = static_cast<float>((x[b].qs[j] >> 4) - 8) * d;
    }
  }
}

void QuantizeQ4_K(const float* x, BlockQ4_K* y, int64_t n) {
  uint8_t L[kQK_K];
  for (int64_t b = 0; b < n / kQK_K; ++b, x += kQK_K) {
    QuantizeKSuperBlock(x, 15, -1.0f, 0.1f, 20, &y[b].d, &y[b].dmin, y[b].scales, L);
    for (int c = 0; c < 4; ++c)
      for (int l = 0; l < 32; ++l)
        y[b].qs[32 * c + l] = static_cast<uint8_t>(L[64 * c + l] | (L[64 * c + 32 + l] << 4));
  }
}

void DequantizeQ4_K(const BlockQ4_K* x, float* y, int64_t n) {
  DequantizeK(x, y, n, [](const BlockQ4_K& blk, int c, int l) {
    const int q = blk.qs[32 * c + l];
    return std::pair<int, int>(q & 0xF, q >> 4);
  });
}

void QuantizeQ5_K(const float* x, BlockQ5_K* y, int64_t n) {
  uint8_t L[kQK_K];
  for (int64_t b = 0; b < n / kQK_K; ++b, x += kQK_K) {
    QuantizeKSuperBlock(x, 31, -0.5f, 0.1f, 15, &y[b].d, &y[b].dmin, y[b].scales, L);
    std::memset(y[b].qh, 0, sizeof(y[b].qh));
    for (int c = 0; c < 4; ++c) {
      for (int l = 0; l < 32; ++l) {
        const int a = L[64 * c + l], h = L[64 * c + 32 + l];
        y[b].qs[32 * c + l] = static_cast<uint8_t>((a & 0xF) | ((h & 0xF) << 4));
        y[b].qh[l] =
            static_cast<uint8_t>(y[b].qh[l] | ((a >> 4) << (2 * c)) | ((h >> 4) << (2 * c + 1)));
      }
    }
  }
}

void DequantizeQ5_K(const BlockQ5_K* x, float* y, int64_t n) {
  DequantizeK(x, y, n, [](const BlockQ5_K& blk, int c, int l) {
    const int q = blk.qs[32 * c + l], h = blk.qh[l];
    return std::pair<int, int>((q & 0xF) | (((h >> (2 * c)) & 1) << 4),
                               (q >> 4) | (((h >> (2 * c + 1)) & 1) << 4));
  });
}

void QuantizeQ6_K(const float* x, BlockQ6_K* y, int64_t n) {
  int8_t L[kQK_K];
  float scales[16];
  for (int64_t b = 0; b < n / kQK_K; ++b, x += kQK_K) {
    float max_scale = 0.0f, max_abs = 0.0f;
    for (int s = 0; s < 16; ++s) {
      scales[s] = FitSymmetric(x + 16 * s, 16, 32, L + 16 * s);
      if (std::fabs(scales[s]) > max_abs) {
        max_abs = std::fabs(scales[s]);
        max_scale = scales[s];
      }
    }
    BlockQ6_K& blk = y[b];
    if (max_abs < 1e-15f) {
      std::memset(&blk, 0, sizeof(blk));
      continue;
    }
    const float iscale = -128.0f / max_scale;
    blk.d = f32_to_fp16(1.0f / iscale);
    for (int s = 0; s < 16; ++s)
      blk.scales[s] = static_cast<int8_t>(std::min(127, NearestInt(iscale * scales[s])));
    const float d = fp16_to_f32(blk.d);
    for (int s = 0; s < 16; ++s) {
      const float ds = d * blk.scales[s];
      if (ds == 0.0f) continue;
      for (int i = 0; i < 16; ++i)
        L[16 * s + i] =
            static_cast<int8_t>(std::clamp(NearestInt(x[16 * s + i] / ds), -32, 31) + 32);
    }
    for (int h = 0; h < 2; ++h) {
      const int8_t* Lh = L + 128 * h;
      uint8_t* ql = blk.ql + 64 * h;
      uint8_t* qh = blk.qh + 32 * h;
      for (int l = 0; l < 32; ++l) {
        const int q1 = Lh[l], q2 = Lh[l + 32], q3 = Lh[l + 64], q4 = Lh[l + 96];
        ql[l] = static_cast<uint8_t>((q1 & 0xF) | ((q3 & 0xF) << 4));
        ql[l + 32] = static_cast<uint8_t>((q2 & 0xF) | ((q4 & 0xF) << 4));
        qh[l] = static_cast<uint8_t>((q1 >> 4) | ((q2 >> 4) << 2) | ((q3 >> 4) << 4) |
                                     ((q4 >> 4) << 6));
      }
    }
  }
}

void DequantizeQ6_K(const BlockQ6_K* x, float* y, int64_t n) {
  for (int64_t b = 0; b < n / kQK_K; ++b, y += kQK_K) {
    const float d = fp16_to_f32(x[b].d);
    for (int h = 0; h < 2; ++h) {
      const uint8_t* ql = x[b].ql + 64 * h;
      const uint8_t* qh = x[b].qh + 32 * h;
      const int8_t* sc = x[b].scales + 8 * h;
      float* yh = y + 128 * h;
      for (int l = 0; l < 32; ++l) {
        const int is = l / 16;
        const int q1 = ((ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
        const int q2 = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
        const int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
        const int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
        yh[l] = d * static_cast<float>(sc[is + 0]) * static_cast<float>(q1);
        yh[l + 32] = d * static_cast<float>(sc[is + 2]) * static_cast<float>(q2);
        yh[l + 64] = d * static_cast<float>(sc[is + 4]) * static_cast<float>(q3);
        yh[l + 96] = d * static_cast<float>(sc[is + 6]) * static_cast<float>(q4);
      }
    }
  }
}

void QuantizeQ8_K(const float* x, BlockQ8_K* y, int64_t n) {
  for (int64_t b = 0; b < n / kQK_K; ++b, x += kQK_K) {
    float amax = 0.0f, max = 0.0f;
    for (int j = 0; j < kQK_K; ++j) {  // the first element of largest magnitude, with sign
      if (std::fabs(x[j]) > amax) {
        amax = std::fabs(x[j]);
        max = x[j];
      }
    }
    BlockQ8_K& blk = y[b];
    if (amax == 0.0f) {
      std::memset(&blk, 0, sizeof(blk));
      continue;
    }
    const float iscale = -127.0f / max;
    for (int j = 0; j < kQK_K; ++j)
      blk.qs[j] = static_cast<int8_t>(std::min(127, NearestInt(iscale * x[j])));
    for (int j = 0; j < 16; ++j) {
      int sum = 0;
      for (int i = 0; i < 16; ++i) sum += blk.qs[16 * j + i];
      blk.bsums[j] = static_cast<int16_t>(sum);
    }
    blk.d = 1.0f / iscale;
  }
}

void DequantizeQ8_K(const BlockQ8_K* x, float* y, int64_t n) {
  for (int64_t b = 0; b < n / kQK_K; ++b, y += kQK_K)
    for (int j = 0; j < kQK_K; ++j) y[j] = x[b].d * static_cast<float>(x[b].qs[j]);
}

}  // namespace strata::internal
