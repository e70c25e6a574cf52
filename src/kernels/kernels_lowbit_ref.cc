// Scalar twins of the 4/5/6-bit weight dot products (Q4_0 x Q8_0, Q4_K / Q5_K / Q6_K x Q8_K).
//
// Each reproduces, operation for operation, the floating-point order of the llama.cpp CPU
// kernel that handles the same case (the `zen4` build of node-llama-cpp: AVX2 code paths,
// GCC contracting `a += b * c` into a fused multiply-add). Integer parts are exact, so only
// the grouping of the integer sums into floats, and the float operations, matter:
//
//   Q4_0 plain   (ggml_vec_dot_q4_0_q8_0; tinyBLAS has the same order): 8 lanes per block of
//                32, lane j = exact sum of elements 4j..4j+3; lane_j = fma(dw*dx, lane sum,
//                lane_j); Reduce8.
//   Q4_0 repack  (weights interleaved 8 rows at a time, CPU_REPACK q4_0_8x8, its gemv and gemm
//                alike): acc = fma(block sum, dw*dx, acc) block after block.
//   Q4_K plain   (ggml_vec_dot_q4_K_q8_K): 8 lanes; per super-block lane l gets
//                sum_c sc[2c] * S(64c+4l..+3) + sc[2c+1] * S(64c+32+4l..+3), lane_l =
//                fma(dx*dw, that, lane_l); mins in 4 lanes, lane p = fma(-dx*dmin,
//                m[2p]*B[2p] + m[2p+1]*B[2p+1], lane_p) with B = per-32 activation sums;
//                result Reduce8(lanes) + ((m0 + m2) + (m1 + m3)).
//   Q4_K repack gemv (CPU_REPACK q4_K_8x8, < 4 tokens and the last n % 4 tokens): per
//                super-block acc = fma(sum_j sc[j] S32(j), dw*dx, acc) and
//                accm = fma(sum_j m[j] B[j], dmin*dx, accm); result acc - accm.
//   Q4_K repack gemm (its gemm, groups of 4 tokens): the same per pair of sub-blocks (64
//                elements) instead of per super-block.
//   Q5_K plain   (ggml_vec_dot_q5_K_q8_K): lanes as Q4_K; the mins go to one scalar,
//                summs = fma(-dx*dmin, sum_j m[j] B[j], summs); result Reduce8(lanes) + summs.
//   Q6_K plain   (ggml_vec_dot_q6_K_q8_K): 8 lanes; lane l gets, per 128-element half h and
//                32-element quarter k, sc[8h+2k+(l>=4)] * S(128h+32k+4l..+3) with q in
//                [0, 63], minus 32 * (bsum[2l] sc[2l] + bsum[2l+1] sc[2l+1]); lane_l =
//                fma(dx*dw, that, lane_l); Reduce8.
// K-quants never go through tinyBLAS in llama.cpp, and Q5_K / Q6_K are not repacked on x86.
#include <cmath>
#include <cstring>

#include "base/fp16.h"
#include "kernels/kernels_impl.h"
#include "tensor/quant.h"

namespace strata::kernels::internal {
namespace {

float Reduce8(const float* l) {
  float s[4];
  for (int i = 0; i < 4; ++i) s[i] = l[4 + i] + l[i];
  return (s[0] + s[2]) + (s[1] + s[3]);
}

// Unsigned levels of one K-quant super-block in element order, and its 6-bit scales/mins.
void UnpackQ4K(const BlockQ4_K& b, int* q, int* sc, int* m) {
  for (int c = 0; c < 4; ++c)
    for (int l = 0; l < 32; ++l) {
      q[64 * c + l] = b.qs[32 * c + l] & 0xF;
      q[64 * c + 32 + l] = b.qs[32 * c + l] >> 4;
    }
  for (int j = 0; j < 8; ++j) {
    uint8_t s, mm;
    UnpackScaleMinK4(b.scales, j, &s, &mm);
    sc[j] = s;
    m[j] = mm;
  }
}

void UnpackQ5K(const BlockQ5_K& b, int* q, int* sc, int* m) {
  for (int c = 0; c < 4; ++c)
    for (int l = 0; l < 32; ++l) {
      q[64 * c + l] = (b.qs[32 * c + l] & 0xF) | (((b.qh[l] >> (2 * c)) & 1) << 4);
      q[64 * c + 32 + l] = (b.qs[32 * c + l] >> 4) | (((b.qh[l] >> (2 * c + 1)) & 1) << 4);
    }
  for (int j = 0; j < 8; ++j) {
    uint8_t s, mm;
    UnpackScaleMinK4(b.scales, j, &s, &mm);
    sc[j] = s;
    m[j] = mm;
  }
}

// Exact sum of q[e] * x[e] over [begin, begin + len).
int32_t SumProd(const int* q, const int8_t* x, int begin, int len) {
  int32_t s = 0;
  for (int e = begin; e < begin + len; ++e) s += q[e] * static_cast<int32_t>(x[e]);
  return s;
}

// Lane sums of the plain Q4_K / Q5_K kernels (see the file comment).
void KLaneSums(const int* q, const int* sc, const int8_t* x, int32_t* lanes) {
  for (int l = 0; l < 8; ++l) {
    int32_t s = 0;
    for (int c = 0; c < 4; ++c)
      s += sc[2 * c] * SumProd(q, x, 64 * c + 4 * l, 4) +
           sc[2 * c + 1] * SumProd(q, x, 64 * c + 32 + 4 * l, 4);
    lanes[l] = s;
  }
}

// m[2p] * B[2p] + m[2p+1] * B[2p+1], B[k] = activation sum of sub-block k (32 elements).
void KMinPairs(const int* m, const BlockQ8_K& x, int32_t* pairs) {
  int32_t B[8];
  for (int k = 0; k < 8; ++k) B[k] = x.bsums[2 * k] + x.bsums[2 * k + 1];
  for (int p = 0; p < 4; ++p) pairs[p] = m[2 * p] * B[2 * p] + m[2 * p + 1] * B[2 * p + 1];
}

// The repacked Q4_K kernels: `group` sub-blocks per float step (8: gemv, 2: gemm).
template <int kGroup>
float DotQ4_KRepack(int64_t n, const void* w, const void* x) {
  const BlockQ4_K* a = static_cast<const BlockQ4_K*>(w);
  const BlockQ8_K* b = static_cast<const BlockQ8_K*>(x);
  int q[256], sc[8], m[8];
  float acc = 0.0f, accm = 0.0f;
  for (int64_t i = 0; i < n / kQK_K; ++i) {
    UnpackQ4K(a[i], q, sc, m);
    const float d = fp16_to_f32(a[i].d) * b[i].d;
    const float dm = fp16_to_f32(a[i].dmin) * b[i].d;
    for (int g = 0; g < 8; g += kGroup) {
      int32_t s = 0, sm = 0;
      for (int j = g; j < g + kGroup; ++j) {
        s += sc[j] * SumProd(q, b[i].qs, 32 * j, 32);
        sm += m[j] * (b[i].bsums[2 * j] + b[i].bsums[2 * j + 1]);
      }
      acc = std::fma(static_cast<float>(s), d, acc);
      accm = std::fma(static_cast<float>(sm), dm, accm);
    }
  }
  return acc - accm;
}

}  // namespace

void QuantizeQ8K(const float* x, void* dst, int64_t n) { QuantizeRow(DType::Q8_K, x, dst, n); }

float DotQ4_0Plain(int64_t n, const void* w, const void* x) {
  const BlockQ4_0* a = static_cast<const BlockQ4_0*>(w);
  const BlockQ8_0* b = static_cast<const BlockQ8_0*>(x);
  float lanes[8] = {0};
  for (int64_t blk = 0; blk < n / 32; ++blk) {
    const float d = fp16_to_f32(a[blk].d) * fp16_to_f32(b[blk].d);
    for (int j = 0; j < 8; ++j) {
      int32_t s = 0;
      for (int e = 4 * j; e < 4 * j + 4; ++e) {
        const int q = (e < 16 ? a[blk].qs[e] & 0xF : a[blk].qs[e - 16] >> 4) - 8;
        s += q * static_cast<int32_t>(b[blk].qs[e]);
      }
      lanes[j] = std::fma(d, static_cast<float>(s), lanes[j]);
    }
  }
  return Reduce8(lanes);
}

float DotQ4_0Repack(int64_t n, const void* w, const void* x) {
  const BlockQ4_0* a = static_cast<const BlockQ4_0*>(w);
  const BlockQ8_0* b = static_cast<const BlockQ8_0*>(x);
  float acc = 0.0f;
  for (int64_t blk = 0; blk < n / 32; ++blk) {
    int32_t s = 0;
    for (int j = 0; j < 16; ++j) {
      s += ((a[blk].qs[j] & 0xF) - 8) * static_cast<int32_t>(b[blk].qs[j]);
      s += ((a[blk].qs[j] >> 4) - 8) * static_cast<int32_t>(b[blk].qs[j + 16]);
    }
    acc = std::fma(static_cast<float>(s), fp16_to_f32(a[blk].d) * fp16_to_f32(b[blk].d), acc);
  }
  return acc;
}

// The Q4_K and Q5_K dot products share all but the level unpack and the order in which the
// mins add up: llama.cpp's Q4_K keeps 4 pair accumulators (kPairMins), its Q5_K one sum.
template <class Block, void (*Unpack)(const Block&, int*, int*, int*), bool kPairMins>
float DotKPlain(int64_t n, const void* w, const void* x) {
  const Block* a = static_cast<const Block*>(w);
  const BlockQ8_K* b = static_cast<const BlockQ8_K*>(x);
  float acc[8] = {0}, accm[4] = {0};
  int q[256], sc[8], m[8];
  for (int64_t i = 0; i < n / kQK_K; ++i) {
    const float d = b[i].d * fp16_to_f32(a[i].d);
    const float dmin = -b[i].d * fp16_to_f32(a[i].dmin);
    Unpack(a[i], q, sc, m);
    int32_t pairs[4], lanes[8];
    KMinPairs(m, b[i], pairs);
    if constexpr (kPairMins) {
      for (int p = 0; p < 4; ++p) accm[p] = std::fma(dmin, static_cast<float>(pairs[p]), accm[p]);
    } else {
      accm[0] =
          std::fma(dmin, static_cast<float>(pairs[0] + pairs[1] + pairs[2] + pairs[3]), accm[0]);
    }
    KLaneSums(q, sc, b[i].qs, lanes);
    for (int l = 0; l < 8; ++l) acc[l] = std::fma(d, static_cast<float>(lanes[l]), acc[l]);
  }
  return Reduce8(acc) + ((accm[0] + accm[2]) + (accm[1] + accm[3]));
}

float DotQ4_KPlain(int64_t n, const void* w, const void* x) {
  return DotKPlain<BlockQ4_K, UnpackQ4K, true>(n, w, x);
}

float DotQ4_KRepackGemv(int64_t n, const void* w, const void* x) {
  return DotQ4_KRepack<8>(n, w, x);
}

float DotQ4_KRepackGemm(int64_t n, const void* w, const void* x) {
  return DotQ4_KRepack<2>(n, w, x);
}

float DotQ5_KPlain(int64_t n, const void* w, const void* x) {
  return DotKPlain<BlockQ5_K, UnpackQ5K, false>(n, w, x);
}

float DotQ6_KPlain(int64_t n, const void* w, const void* x) {
  const BlockQ6_K* a = static_cast<const BlockQ6_K*>(w);
  const BlockQ8_K* b = static_cast<const BlockQ8_K*>(x);
  float acc[8] = {0};
  int q[256];
  for (int64_t i = 0; i < n / kQK_K; ++i) {
    const float d = b[i].d * fp16_to_f32(a[i].d);
    for (int h = 0; h < 2; ++h) {
      const uint8_t* ql = a[i].ql + 64 * h;
      const uint8_t* qh = a[i].qh + 32 * h;
      for (int l = 0; l < 32; ++l) {
        q[128 * h + l] = (ql[l] & 0xF) | ((qh[l] & 3) << 4);
        q[128 * h + l + 32] = (ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4);
        q[128 * h + l + 64] = (ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4);
        q[128 * h + l + 96] = (ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4);
      }
    }
    const int8_t* sc = a[i].scales;
    for (int l = 0; l < 8; ++l) {
      int32_t s = 0;
      for (int h = 0; h < 2; ++h)
        for (int k = 0; k < 4; ++k)
          s += sc[8 * h + 2 * k + (l >= 4 ? 1 : 0)] *
               SumProd(q, b[i].qs, 128 * h + 32 * k + 4 * l, 4);
      s -= 32 * (b[i].bsums[2 * l] * sc[2 * l] + b[i].bsums[2 * l + 1] * sc[2 * l + 1]);
      acc[l] = std::fma(d, static_cast<float>(s), acc[l]);
    }
  }
  return Reduce8(acc);
}

}  // namespace strata::kernels::internal
