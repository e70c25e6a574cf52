// ARM NEON kernels (AArch64, where NEON is part of the base architecture). Compiled only for
// aarch64 targets (see CMakeLists.txt) with -ffp-contract=off, so multiply/add pairs round
// like the scalar twins' unless an FMA is written explicitly.
//
// Every kernel here follows the accumulation order of its scalar twin in kernels_ref.cc, so
// the results are bit-identical to the "scalar" path (and so to the x86 paths):
//   Q8_0:    8 exact int32 lanes per 32-block (lane j = elements 4j..4j+3), each accumulated
//            with fma(dw*dx, lane), then the Reduce8 tree. With __ARM_FEATURE_DOTPROD the
//            lanes come from SDOT (vdotq_s32), which sums exactly those four products per
//            lane; otherwise from widening multiplies and pairwise adds (vmull_s8/vpaddlq).
//   F32/F16: one 16-lane FMA accumulator (GEMM order), or four folded ones over 64-element
//            steps (single-token order), then the Reduce16 tree; leftovers as the twin.
//   Q8_0/F16 activation conversion: round-half-even, as the twin.
//   RmsNorm: products vectorised, the double sum in the twin's sequential order.
//   SiluMul: the twin's polynomial exp (ref::ExpPoly) lane by lane, 2^n applied in two exact
//            steps so that subnormal results round once, like ldexp.
// BF16, the 4/5/6-bit types, Softmax and Attention use the scalar twins' entries.
#if defined(__aarch64__)

#include <arm_neon.h>

#include <cmath>
#include <cstring>

#include "base/fp16.h"
#include "kernels/kernels.h"
#include "kernels/kernels_impl.h"

namespace strata::kernels {
namespace neon {
namespace {

constexpr int kQK = 32;  // Q8_0 block size

// ---- reductions (the twins' trees) --------------------------------------------------------

// l[0..3] = lo, l[4..7] = hi: (s0 + s2) + (s1 + s3) with s[i] = l[4+i] + l[i].
inline float Reduce8(float32x4_t lo, float32x4_t hi) {
  const float32x4_t s = vaddq_f32(hi, lo);
  const float32x2_t p = vadd_f32(vget_low_f32(s), vget_high_f32(s));  // {s0+s2, s1+s3}
  return vget_lane_f32(p, 0) + vget_lane_f32(p, 1);
}

// 16 lanes in a[0..3]: t[i] = l[8+i] + l[i], then Reduce8(t).
inline float Reduce16(const float32x4_t a[4]) {
  return Reduce8(vaddq_f32(a[2], a[0]), vaddq_f32(a[3], a[1]));
}

// ---- activation converters ---------------------------------------------------------------

void QuantizeF16(const float* x, void* dst, int64_t n) {
  uint16_t* y = static_cast<uint16_t*>(dst);
  int64_t i = 0;
  for (; i + 4 <= n; i += 4)
    vst1_u16(y + i, vreinterpret_u16_f16(vcvt_f16_f32(vld1q_f32(x + i))));  // RNE (FPCR)
  for (; i < n; ++i) y[i] = f32_to_fp16(x[i]);
}

void QuantizeQ8_0(const float* x, void* dst, int64_t n) {
  auto* out = static_cast<uint8_t*>(dst);  // blocks need not be aligned (KV rows)
  for (int64_t b = 0; b < n / kQK; ++b) {
    const float* xb = x + b * kQK;
    BlockQ8_0 blk;
    float32x4_t v[8];
    float32x4_t m = vdupq_n_f32(0.0f);
    for (int k = 0; k < 8; ++k) {
      v[k] = vld1q_f32(xb + 4 * k);
      m = vmaxnmq_f32(m, vabsq_f32(v[k]));  // fmax semantics
    }
    const float amax = vmaxnmvq_f32(m);
    const float d = amax / 127.0f;
    const float id = amax != 0.0f ? 127.0f / amax : 0.0f;
    const uint16_t dh = f32_to_fp16(d);
    std::memcpy(&blk.d, &dh, sizeof(dh));
    for (int k = 0; k < 8; k += 2) {
      // Round half to even, as nearbyintf in the default rounding mode.
      const int32x4_t q0 = vcvtnq_s32_f32(vmulq_n_f32(v[k], id));
      const int32x4_t q1 = vcvtnq_s32_f32(vmulq_n_f32(v[k + 1], id));
      const int16x8_t q = vcombine_s16(vmovn_s32(q0), vmovn_s32(q1));
      vst1_s8(blk.qs + 4 * k, vmovn_s16(q));
    }
    std::memcpy(out + b * sizeof(blk), &blk, sizeof(blk));
  }
}

// ---- Q8_0 x Q8_0 --------------------------------------------------------------------------

// The 8 lanes of one block pair: lane j = sum of products of elements 4j..4j+3 (exact).
inline void BlockLanes(const int8_t* a, const int8_t* b, int32x4_t* lo, int32x4_t* hi) {
  const int8x16_t a0 = vld1q_s8(a), a1 = vld1q_s8(a + 16);
  const int8x16_t b0 = vld1q_s8(b), b1 = vld1q_s8(b + 16);
#if defined(__ARM_FEATURE_DOTPROD)
  *lo = vdotq_s32(vdupq_n_s32(0), a0, b0);
  *hi = vdotq_s32(vdupq_n_s32(0), a1, b1);
#else
  // Products as int16 (|p| <= 2^14), pairs summed into int32, then adjacent pairs.
  const int32x4_t p0 = vpaddlq_s16(vmull_s8(vget_low_s8(a0), vget_low_s8(b0)));
  const int32x4_t p1 = vpaddlq_s16(vmull_s8(vget_high_s8(a0), vget_high_s8(b0)));
  const int32x4_t p2 = vpaddlq_s16(vmull_s8(vget_low_s8(a1), vget_low_s8(b1)));
  const int32x4_t p3 = vpaddlq_s16(vmull_s8(vget_high_s8(a1), vget_high_s8(b1)));
  *lo = vpaddq_s32(p0, p1);
  *hi = vpaddq_s32(p2, p3);
#endif
}

inline float ScaleOf(const BlockQ8_0* b) {
  uint16_t h;
  std::memcpy(&h, &b->d, sizeof(h));
  return fp16_to_f32(h);
}

// out[i * NR + r] = dot(weight row r, token row i), each in the twin's order.
struct Q8Dot {
  template <int NR, int NX>
  static void Run(int64_t n, const uint8_t* w, size_t ws, const uint8_t* x, size_t xs, float* out) {
    float32x4_t lo[NR][NX], hi[NR][NX];
#pragma GCC unroll 4
    for (int r = 0; r < NR; ++r)
#pragma GCC unroll 4
      for (int i = 0; i < NX; ++i) lo[r][i] = hi[r][i] = vdupq_n_f32(0.0f);
    for (int64_t blk = 0; blk < n / kQK; ++blk) {
#pragma GCC unroll 4
      for (int r = 0; r < NR; ++r) {
        const BlockQ8_0* a = reinterpret_cast<const BlockQ8_0*>(w + r * ws) + blk;
        const float da = ScaleOf(a);
#pragma GCC unroll 4
        for (int i = 0; i < NX; ++i) {
          const BlockQ8_0* b = reinterpret_cast<const BlockQ8_0*>(x + i * xs) + blk;
          const float32x4_t d = vdupq_n_f32(da * ScaleOf(b));
          int32x4_t l0, l1;
          BlockLanes(a->qs, b->qs, &l0, &l1);
          lo[r][i] = vfmaq_f32(lo[r][i], d, vcvtq_f32_s32(l0));
          hi[r][i] = vfmaq_f32(hi[r][i], d, vcvtq_f32_s32(l1));
        }
      }
    }
#pragma GCC unroll 4
    for (int i = 0; i < NX; ++i)
#pragma GCC unroll 4
      for (int r = 0; r < NR; ++r) out[i * NR + r] = Reduce8(lo[r][i], hi[r][i]);
  }
};

// ---- F32 / F16 ----------------------------------------------------------------------------

struct LoadF32 {
  static float32x4_t Load(const void* p, int64_t i) {
    return vld1q_f32(static_cast<const float*>(p) + i);
  }
  static float At(const void* p, int64_t i) { return static_cast<const float*>(p)[i]; }
};

struct LoadF16 {
  static float32x4_t Load(const void* p, int64_t i) {  // f16 -> f32 is exact
    return vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(static_cast<const uint16_t*>(p) + i)));
  }
  static float At(const void* p, int64_t i) {
    return fp16_to_f32(static_cast<const uint16_t*>(p)[i]);
  }
};

// GEMM order: 16 lanes, lane j accumulates elements 16c + j with FMA; Reduce16.
template <class L>
float DotLanes(int64_t n, const void* w, const void* x) {
  float32x4_t acc[4] = {vdupq_n_f32(0.0f), vdupq_n_f32(0.0f), vdupq_n_f32(0.0f), vdupq_n_f32(0.0f)};
  int64_t i = 0;
  for (; i + 16 <= n; i += 16)
    for (int k = 0; k < 4; ++k)
      acc[k] = vfmaq_f32(acc[k], L::Load(w, i + 4 * k), L::Load(x, i + 4 * k));
  if (i < n) {  // partial chunk: lanes past the end are left unchanged, as in the twin
    float lanes[16];
    for (int k = 0; k < 4; ++k) vst1q_f32(lanes + 4 * k, acc[k]);
    for (int j = 0; i + j < n; ++j) lanes[j] = std::fma(L::At(w, i + j), L::At(x, i + j), lanes[j]);
    for (int k = 0; k < 4; ++k) acc[k] = vld1q_f32(lanes + 4 * k);
  }
  return Reduce16(acc);
}

// Single-token order: four 16-lane accumulators over 64-element steps, folded (0+2)+(1+3).
template <class L>
float Fold4x16(int64_t np, const void* w, const void* x) {
  float32x4_t acc[4][4];
  for (auto& a : acc)
    for (auto& v : a) v = vdupq_n_f32(0.0f);
  for (int64_t i = 0; i < np; i += 64)
    for (int j = 0; j < 4; ++j)
      for (int k = 0; k < 4; ++k) {
        const int64_t e = i + 16 * j + 4 * k;
        acc[j][k] = vfmaq_f32(acc[j][k], L::Load(w, e), L::Load(x, e));
      }
  float32x4_t folded[4];
  for (int k = 0; k < 4; ++k)
    folded[k] = vaddq_f32(vaddq_f32(acc[0][k], acc[2][k]), vaddq_f32(acc[1][k], acc[3][k]));
  return Reduce16(folded);
}

float DotF32Vec(int64_t n, const void* w, const void* x) {
  const int64_t np = n & ~int64_t{63};
  float sum = Fold4x16<LoadF32>(np, w, x);
  for (int64_t i = np; i < n; ++i) sum = std::fma(LoadF32::At(w, i), LoadF32::At(x, i), sum);
  return sum;
}

float DotF16Vec(int64_t n, const void* w, const void* x) {
  const int64_t np = n & ~int64_t{63};
  double sum = Fold4x16<LoadF16>(np, w, x);
  for (int64_t i = np; i < n; ++i)
    sum += static_cast<double>(LoadF16::At(w, i) * LoadF16::At(x, i));
  return static_cast<float>(sum);
}

// ---- element-wise ---------------------------------------------------------------------------

void RmsNorm(const float* x, const float* w, float* y, int64_t n, float eps) {
  // The squares are vectorised; their double sum keeps the twin's sequential order, so the
  // result is bit-identical to it.
  double sum = 0.0;
  int64_t i = 0;
  float sq[4];
  for (; i + 4 <= n; i += 4) {
    const float32x4_t v = vld1q_f32(x + i);
    vst1q_f32(sq, vmulq_f32(v, v));
    for (float s : sq) sum += static_cast<double>(s);
  }
  for (; i < n; ++i) sum += static_cast<double>(x[i] * x[i]);
  const float mean = static_cast<float>(sum / static_cast<double>(n));
  const float scale = 1.0f / std::sqrt(mean + eps);
  const float32x4_t vs = vdupq_n_f32(scale);
  for (i = 0; i + 4 <= n; i += 4)
    vst1q_f32(y + i, vmulq_f32(vmulq_f32(vld1q_f32(x + i), vs), vld1q_f32(w + i)));
  for (; i < n; ++i) y[i] = (x[i] * scale) * w[i];
}

// 2^k for k in [-126, 127] (normal range) as floats.
inline float32x4_t Pow2(int32x4_t k) {
  return vreinterpretq_f32_s32(vshlq_n_s32(vaddq_s32(k, vdupq_n_s32(127)), 23));
}

// ref::ExpPoly on four lanes, bit for bit.
inline float32x4_t ExpPoly4(float32x4_t x) {
  const float32x4_t r = vdupq_n_f32(0x1.8p23f);
  const float32x4_t z = vfmaq_f32(r, x, vdupq_n_f32(0x1.715476p+0f));
  const float32x4_t nn = vsubq_f32(z, r);
  const float32x4_t neg = vnegq_f32(nn);
  const float32x4_t b =
      vfmaq_f32(vfmaq_f32(x, neg, vdupq_n_f32(0x1.62e4p-1f)), neg, vdupq_n_f32(0x1.7f7d1cp-20f));
  const float32x4_t u = vmulq_f32(b, b);
  const float32x4_t p54 = vfmaq_f32(vdupq_n_f32(0x1.573e2ep-5f), vdupq_n_f32(0x1.0e4020p-7f), b);
  const float32x4_t p32 = vfmaq_f32(vdupq_n_f32(0x1.fffdb6p-2f), vdupq_n_f32(0x1.555e66p-3f), b);
  const float32x4_t p10 = vfmaq_f32(vdupq_n_f32(1.0f), vdupq_n_f32(0x1.ffffecp-1f), b);
  const float32x4_t j = vfmaq_f32(p10, vfmaq_f32(p32, p54, u), u);
  // j * 2^n (|n| <= 192 here): two power-of-two factors; the first product is exact (it stays
  // normal), so only the second rounds, exactly as ldexp rounds a subnormal result.
  const uint32x4_t big = vcagtq_f32(nn, vdupq_n_f32(192.0f));
  const int32x4_t ni = vcvtq_s32_f32(vbslq_f32(big, vdupq_n_f32(0.0f), nn));
  const int32x4_t n1 = vshrq_n_s32(ni, 1);  // floor(n / 2), in [-96, 96]
  const int32x4_t n2 = vsubq_s32(ni, n1);
  const float32x4_t scaled = vmulq_f32(vmulq_f32(j, Pow2(n1)), Pow2(n2));
  const float32x4_t sat =
      vbslq_f32(vcleq_f32(nn, vdupq_n_f32(0.0f)), vdupq_n_f32(0.0f), vdupq_n_f32(INFINITY));
  return vbslq_f32(big, sat, scaled);
}

void SiluMul(float* gate, const float* up, int64_t n) {
  // Whole groups of 16 with the polynomial exp (as the twin), the tail with libm's.
  const int64_t n16 = n / 16 * 16;
  const float32x4_t zero = vdupq_n_f32(0.0f), one = vdupq_n_f32(1.0f);
  for (int64_t i = 0; i < n16; i += 4) {
    const float32x4_t g = vld1q_f32(gate + i);
    const float32x4_t e = ExpPoly4(vsubq_f32(zero, g));
    const float32x4_t s = vdivq_f32(g, vaddq_f32(one, e));
    vst1q_f32(gate + i, vmulq_f32(s, vld1q_f32(up + i)));
  }
  for (int64_t i = n16; i < n; ++i) {
    const float g = gate[i];
    gate[i] = g / (1.0f + std::exp(-g)) * up[i];
  }
}

void Add(float* y, const float* x, int64_t n) {
  int64_t i = 0;
  for (; i + 4 <= n; i += 4) vst1q_f32(y + i, vaddq_f32(vld1q_f32(y + i), vld1q_f32(x + i)));
  for (; i < n; ++i) y[i] += x[i];
}

}  // namespace
}  // namespace neon

namespace internal {

const IsaKernels& NeonKernels() {
  // The scalar table with the NEON entries swapped in (BF16 and the 4/5/6-bit types keep
  // the twins' functions, including their repacked-order entries).
  static TypeKernels types[16];
  static const IsaKernels isa = [] {
    const IsaKernels& s = ScalarKernels();
    int n = 0;
    for (int i = 0; i < s.n_types && n < 16; ++i) {
      TypeKernels k = s.types[i];
      switch (k.weight_type) {
        case DType::F32:
          k.vec_dot = neon::DotF32Vec;
          k.vec_dot_tile = PerEntryTile<neon::DotLanes<neon::LoadF32>>;
          break;
        case DType::F16:
          k.quantize = neon::QuantizeF16;
          k.vec_dot = neon::DotF16Vec;
          k.vec_dot_tile = PerEntryTile<neon::DotLanes<neon::LoadF16>>;
          break;
        case DType::Q8_0:
          k.quantize = neon::QuantizeQ8_0;
          k.vec_dot = VecDotOne<neon::Q8Dot>;
          k.vec_dot_tile = VecDotTile<neon::Q8Dot>;
          break;
        case DType::Q4_0:
          k.quantize = neon::QuantizeQ8_0;  // its activations are Q8_0
          break;
        default: break;
      }
      types[n++] = k;
    }
    return IsaKernels{"neon",    types,         n,         neon::RmsNorm,
                      s.softmax, neon::SiluMul, neon::Add, s.attention};
  }();
  return isa;
}

}  // namespace internal
}  // namespace strata::kernels

#endif  // defined(__aarch64__)
