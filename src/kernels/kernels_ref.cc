// Scalar reference kernels. These define each kernel's result; the SIMD paths are tested
// against them. They are also the "scalar" dispatch path.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <iterator>
#include <limits>
#include <vector>

#include "base/fp16.h"
#include "kernels/kernels.h"
#include "kernels/kernels_impl.h"

namespace strata::kernels {
namespace {

constexpr int kQK = 32;  // Q8_0 block size

// ---- activation converters --------------------------------------------------------------

void QuantizeF16(const float* x, void* dst, int64_t n) {
  uint16_t* y = static_cast<uint16_t*>(dst);
  for (int64_t i = 0; i < n; ++i) y[i] = f32_to_fp16(x[i]);
}

void QuantizeBF16(const float* x, void* dst, int64_t n) {
  uint16_t* y = static_cast<uint16_t*>(dst);
  for (int64_t i = 0; i < n; ++i) y[i] = f32_to_bf16(x[i]);
}

// Per block of 32: d = amax/127 (stored as fp16), q = round-half-even(x * 127/amax).
void QuantizeQ8_0(const float* x, void* dst, int64_t n) {
  auto* out = static_cast<uint8_t*>(dst);  // blocks need not be aligned (KV rows)
  for (int64_t b = 0; b < n / kQK; ++b) {
    const float* xb = x + b * kQK;
    BlockQ8_0 blk;
    float amax = 0.0f;
    for (int i = 0; i < kQK; ++i) amax = std::fmax(amax, std::fabs(xb[i]));
    const float d = amax / 127.0f;
    const float id = amax != 0.0f ? 127.0f / amax : 0.0f;
    blk.d = f32_to_fp16(d);
    for (int i = 0; i < kQK; ++i) blk.qs[i] = static_cast<int8_t>(std::nearbyintf(xb[i] * id));
    std::memcpy(out + b * sizeof(blk), &blk, sizeof(blk));
  }
}

// ---- dot products ------------------------------------------------------------------------
// Each dot reproduces the accumulation order of llama.cpp's CPU matmul (llamafile's tinyBLAS,
// which ggml uses for these types), so that results agree bit for bit:
//   F32/F16: 16 lanes, lane j accumulates elements 16c+j with fused multiply-add, then the
//            lanes are reduced as a halving tree (Reduce16).
//   BF16:    16 lanes over 32-element chunks, lane j adds the odd product then the even one
//            (vdpbf16ps), then Reduce16.
//   Q8_0:    8 lanes per block, lane j holds the exact integer sum of elements 4j..4j+3, and
//            accumulates fma(dw*dx, that sum); then Reduce8.
// The SIMD paths implement the same orders.

float Reduce8(const float* l) {
  float s[4];
  for (int i = 0; i < 4; ++i) s[i] = l[4 + i] + l[i];
  return (s[0] + s[2]) + (s[1] + s[3]);
}

float Reduce16(const float* l) {
  float t[8];
  for (int i = 0; i < 8; ++i) t[i] = l[8 + i] + l[i];
  return Reduce8(t);
}

template <float (*kLoad)(const void*, int64_t)>
float DotFloatLanes(int64_t n, const void* w, const void* x) {
  float lanes[16] = {0};
  for (int64_t i = 0; i < n; i += 16)
    for (int j = 0; j < 16 && i + j < n; ++j)
      lanes[j] = std::fma(kLoad(w, i + j), kLoad(x, i + j), lanes[j]);
  return Reduce16(lanes);
}

float LoadF32At(const void* p, int64_t i) { return static_cast<const float*>(p)[i]; }
float LoadF16At(const void* p, int64_t i) {
  return fp16_to_f32(static_cast<const uint16_t*>(p)[i]);
}
float LoadBF16At(const void* p, int64_t i) {
  return bf16_to_f32(static_cast<const uint16_t*>(p)[i]);
}

float DotF32(int64_t n, const void* w, const void* x) { return DotFloatLanes<LoadF32At>(n, w, x); }
float DotF16(int64_t n, const void* w, const void* x) { return DotFloatLanes<LoadF16At>(n, w, x); }

float DotBF16(int64_t n, const void* w, const void* x) {
  float lanes[16] = {0};
  auto at = [&](const void* p, int64_t i) { return i < n ? LoadBF16At(p, i) : 0.0f; };
  for (int64_t c = 0; c < n; c += 32) {
    for (int j = 0; j < 16; ++j) {
      const int64_t e = c + 2 * j;  // bf16 products are exact in f32: only the adds round
      lanes[j] = lanes[j] + at(w, e + 1) * at(x, e + 1);
      lanes[j] = lanes[j] + at(w, e) * at(x, e);
    }
  }
  return Reduce16(lanes);
}

// Single-token orders (llama.cpp's ggml_vec_dot_* on AVX-512, used when a matmul has one
// token; with two or more it uses the orders above):
//   F32:  four 16-lane fma accumulators over 64-element steps, folded (0+2)+(1+3), Reduce16,
//         leftovers fused into the float sum.
//   F16:  the same accumulators and fold, sum in double, leftovers added in double.
//   BF16: two 16-lane vdpbf16ps accumulators over 64-element steps, each reduced by Reduce16
//         and added in double, leftovers in double.
template <float (*kLoadW)(const void*, int64_t), float (*kLoadX)(const void*, int64_t)>
float Fold4x16(int64_t np, const void* w, const void* x) {
  float acc[4][16] = {};
  for (int64_t i = 0; i < np; i += 64)
    for (int j = 0; j < 4; ++j)
      for (int l = 0; l < 16; ++l)
        acc[j][l] = std::fma(kLoadW(w, i + 16 * j + l), kLoadX(x, i + 16 * j + l), acc[j][l]);
  float folded[16];
  for (int l = 0; l < 16; ++l) folded[l] = (acc[0][l] + acc[2][l]) + (acc[1][l] + acc[3][l]);
  return Reduce16(folded);
}

float DotF32Vec(int64_t n, const void* w, const void* x) {
  const int64_t np = n & ~int64_t{63};
  float sum = Fold4x16<LoadF32At, LoadF32At>(np, w, x);
  for (int64_t i = np; i < n; ++i) sum = std::fma(LoadF32At(w, i), LoadF32At(x, i), sum);
  return sum;
}

template <float (*kLoadX)(const void*, int64_t)>
float DotF16VecT(int64_t n, const void* w, const void* x) {
  const int64_t np = n & ~int64_t{63};
  double sum = Fold4x16<LoadF16At, kLoadX>(np, w, x);
  for (int64_t i = np; i < n; ++i) sum += static_cast<double>(LoadF16At(w, i) * kLoadX(x, i));
  return static_cast<float>(sum);
}

float DotF16Vec(int64_t n, const void* w, const void* x) { return DotF16VecT<LoadF16At>(n, w, x); }

float DotBF16Vec(int64_t n, const void* w, const void* x) {
  float c[2][16] = {};
  int64_t i = 0;
  for (; i + 64 <= n; i += 64)
    for (int h = 0; h < 2; ++h)
      for (int j = 0; j < 16; ++j) {
        const int64_t e = i + 32 * h + 2 * j;
        c[h][j] = c[h][j] + LoadBF16At(w, e + 1) * LoadBF16At(x, e + 1);
        c[h][j] = c[h][j] + LoadBF16At(w, e) * LoadBF16At(x, e);
      }
  double sum = Reduce16(c[0]);
  sum += Reduce16(c[1]);
  for (; i < n; ++i) sum += static_cast<double>(LoadBF16At(w, i) * LoadBF16At(x, i));
  return static_cast<float>(sum);
}

float DotQ8_0(int64_t n, const void* w, const void* x) {
  const BlockQ8_0* a = static_cast<const BlockQ8_0*>(w);
  const BlockQ8_0* b = static_cast<const BlockQ8_0*>(x);
  float lanes[8] = {0};
  for (int64_t blk = 0; blk < n / kQK; ++blk) {
    const float d = fp16_to_f32(a[blk].d) * fp16_to_f32(b[blk].d);
    for (int j = 0; j < 8; ++j) {
      int32_t sumi = 0;
      for (int k = 4 * j; k < 4 * j + 4; ++k)
        sumi += static_cast<int32_t>(a[blk].qs[k]) * static_cast<int32_t>(b[blk].qs[k]);
      lanes[j] = std::fma(d, static_cast<float>(sumi), lanes[j]);
    }
  }
  return Reduce8(lanes);
}

using internal::TypeKernels;
// Every scalar tile: each entry by the type's dot product.
template <internal::VecDotFn kDot>
constexpr internal::VecDotTileFn DotTile = internal::PerEntryTile<kDot>;

constexpr TypeKernels kScalarTypes[] = {
    {DType::F32, DType::F32, nullptr, DotF32Vec, DotTile<DotF32>},
    {DType::F16, DType::F16, QuantizeF16, DotF16Vec, DotTile<DotF16>},
    {DType::BF16, DType::BF16, QuantizeBF16, DotBF16Vec, DotTile<DotBF16>},
    {DType::Q8_0, DType::Q8_0, QuantizeQ8_0, DotQ8_0, DotTile<DotQ8_0>},
    {DType::Q4_0, DType::Q8_0, QuantizeQ8_0, internal::DotQ4_0Plain,
     DotTile<internal::DotQ4_0Plain>, internal::DotQ4_0Repack, DotTile<internal::DotQ4_0Repack>},
    {DType::Q4_K, DType::Q8_K, internal::QuantizeQ8K, internal::DotQ4_KPlain,
     DotTile<internal::DotQ4_KPlain>, internal::DotQ4_KRepackGemv,
     DotTile<internal::DotQ4_KRepackGemm>},
    {DType::Q5_K, DType::Q8_K, internal::QuantizeQ8K, internal::DotQ5_KPlain,
     DotTile<internal::DotQ5_KPlain>},
    {DType::Q6_K, DType::Q8_K, internal::QuantizeQ8K, internal::DotQ6_KPlain,
     DotTile<internal::DotQ6_KPlain>},
};

void AddScalar(float* y, const float* x, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] += x[i];
}

// q.k of attention: llama.cpp's single-token f16 dot (q already rounded to f16 values).
float AttnScoreDot(const uint16_t* k, const float* q16, int n) {
  return DotF16VecT<LoadF32At>(n, k, q16);
}

}  // namespace

namespace ref {

void SplitScoresQ8(const BlockQ8_0* qx, int nh, int nb, const uint8_t* k, size_t k_row,
                   int64_t n_kv, float scale, float* s) {
  for (int64_t j = 0; j < n_kv; ++j) {
    const uint8_t* kr = k + static_cast<size_t>(j) * k_row;
    for (int h = 0; h < nh; ++h) {
      float acc = 0.0f;
      for (int b = 0; b < nb; ++b) {
        BlockQ8_0 blk;  // rows may sit at any even byte offset
        std::memcpy(&blk, kr + static_cast<size_t>(b) * sizeof blk, sizeof blk);
        const BlockQ8_0& q = qx[h * nb + b];
        int32_t dot = 0;
        for (int i = 0; i < 32; ++i) dot += int32_t{blk.qs[i]} * int32_t{q.qs[i]};
        acc = std::fma(fp16_to_f32(blk.d) * fp16_to_f32(q.d), static_cast<float>(dot), acc);
      }
      s[h * kSplitKvChunk + j] = acc * scale;
    }
  }
}

void QuantizeActivationRow(DType weight_type, const float* x, void* dst, int64_t n) {
  internal::QuantizeActivationRowWith(internal::ScalarKernels(), weight_type, x, dst, n);
}

float VecDot(DType weight_type, int64_t n, const void* w_row, const void* x_row) {
  return internal::VecDotWith(internal::ScalarKernels(), weight_type, n, w_row, x_row);
}

void MatMul(const void* W, DType w_type, int64_t rows, int64_t cols, const float* X, int64_t n_tok,
            float* Y) {
  const TypeKernels* t = internal::FindType(internal::ScalarKernels(), w_type);
  if (t == nullptr) {
    for (int64_t i = 0; i < rows * n_tok; ++i) Y[i] = std::numeric_limits<float>::quiet_NaN();
    return;
  }
  const size_t w_row = RowBytesUnchecked(w_type, cols);
  const size_t x_row = RowBytesUnchecked(t->vec_dot_type, cols);
  std::vector<uint8_t> xq(x_row);
  const uint8_t* w = static_cast<const uint8_t*>(W);
  const bool gemm = internal::UseGemmOrder(w_type, rows, cols, n_tok);
  const bool repack = internal::UseRepackOrder(*t, rows);
  for (int64_t tok = 0; tok < n_tok; ++tok) {
    QuantizeActivationRow(w_type, X + tok * cols, xq.data(), cols);
    for (int64_t r = 0; r < rows; ++r) {
      float* y = Y + tok * rows + r;
      if (repack) {
        if (tok < internal::RepackGemmTokens(n_tok)) {
          t->repack_tile(cols, w + r * w_row, w_row, 1, xq.data(), x_row, 1, y, 1);
        } else {
          *y = t->repack_vec_dot(cols, w + r * w_row, xq.data());
        }
      } else if (gemm) {
        t->vec_dot_tile(cols, w + r * w_row, w_row, 1, xq.data(), x_row, 1, y, 1);
      } else {
        *y = t->vec_dot(cols, w + r * w_row, xq.data());
      }
    }
  }
}

void RmsNorm(const float* x, const float* w, float* y, int64_t n, float eps) {
  double sum = 0.0;
  for (int64_t i = 0; i < n; ++i) sum += static_cast<double>(x[i] * x[i]);
  const float mean = static_cast<float>(sum / static_cast<double>(n));
  const float scale = 1.0f / std::sqrt(mean + eps);
  for (int64_t i = 0; i < n; ++i) y[i] = (x[i] * scale) * w[i];
}

void Rope(float* x, int64_t n_heads, int64_t head_dim, int32_t pos, float base,
          const float* freq_factors, bool neox) {
  const float theta_scale = std::pow(base, -2.0f / static_cast<float>(head_dim));
  const int64_t half = head_dim / 2;
  float theta = static_cast<float>(pos);
  for (int64_t i0 = 0; i0 + 1 < head_dim; i0 += 2) {
    const float ff = freq_factors != nullptr ? freq_factors[i0 / 2] : 1.0f;
    const float c = std::cos(theta / ff);
    const float s = std::sin(theta / ff);
    theta *= theta_scale;
    const int64_t a = neox ? i0 / 2 : i0;
    const int64_t b = neox ? i0 / 2 + half : i0 + 1;
    for (int64_t h = 0; h < n_heads; ++h) {
      float* xh = x + h * head_dim;
      const float x0 = xh[a];
      const float x1 = xh[b];
      // llama.cpp's build fuses one product of each rotation into a multiply-add (compiler
      // contraction: x0*c in the first, x0*s in the second); fusing the same products keeps
      // results identical to it.
      xh[a] = std::fma(x0, c, -(x1 * s));
      xh[b] = std::fma(x0, s, x1 * c);
    }
  }
}

void Softmax(float* x, int64_t n) {
  if (n <= 0) return;
  float max = -std::numeric_limits<float>::infinity();
  for (int64_t i = 0; i < n; ++i) max = std::fmax(max, x[i]);
  double sum = 0.0;
  for (int64_t i = 0; i < n; ++i) {
    const float e = std::exp(x[i] - max);
    x[i] = e;
    sum += e;
  }
  const float inv = static_cast<float>(1.0 / sum);
  for (int64_t i = 0; i < n; ++i) x[i] *= inv;
}

// e^x as llama.cpp's AVX-512 SiLU computes it: x = n ln2 + b (n by the round-to-integer
// trick, ln2 split in two), e^b by a degree-5 polynomial in Estrin form, scaled by 2^n;
// |n| > 192 saturates to 0 or infinity.
float ExpPoly(float x) {
  const float r = 0x1.8p23f;
  const float z = std::fma(x, 0x1.715476p+0f, r);
  const float nn = z - r;
  const float b = std::fma(-nn, 0x1.7f7d1cp-20f, std::fma(-nn, 0x1.62e4p-1f, x));
  if (std::fabs(nn) > 192.0f) return nn <= 0.0f ? 0.0f : INFINITY;
  const float u = b * b;
  const float j = std::fma(std::fma(std::fma(0x1.0e4020p-7f, b, 0x1.573e2ep-5f), u,
                                    std::fma(0x1.555e66p-3f, b, 0x1.fffdb6p-2f)),
                           u, std::fma(0x1.ffffecp-1f, b, 1.0f));
  return std::ldexp(j, static_cast<int>(nn));
}

float SiluPoly(float g) { return g / (1.0f + ExpPoly(0.0f - g)); }

void SiluMul(float* gate, const float* up, int64_t n) {
  // Whole groups of 16 use the polynomial exp (as llama.cpp's vector path), the tail libm's.
  const int64_t n16 = n / 16 * 16;
  for (int64_t i = 0; i < n16; ++i) gate[i] = SiluPoly(gate[i]) * up[i];
  for (int64_t i = n16; i < n; ++i) {
    const float g = gate[i];
    gate[i] = g / (1.0f + std::exp(-g)) * up[i];
  }
}

void Attention(const float* q, const uint16_t* k, const uint16_t* v, int64_t n_kv,
               int64_t kv_stride, int n_heads, int n_kv_heads, int head_dim, float scale,
               float* out, float* scratch) {
  // llama.cpp's CPU flash attention: q rounded to f16, one pass over the keys with an online
  // softmax, and the weighted sum of values accumulated in f16 (rounded after every step).
  (void)scratch;
  const int group = n_heads / n_kv_heads;
  float acc[kMaxHeadDim];  // f16-representable values
  float q16[kMaxHeadDim];
  for (int h = 0; h < n_heads; ++h) {
    const int64_t col = static_cast<int64_t>(h / group) * head_dim;
    const float* qh = q + static_cast<int64_t>(h) * head_dim;
    for (int d = 0; d < head_dim; ++d) {
      q16[d] = fp16_to_f32(f32_to_fp16(qh[d]));
      acc[d] = 0.0f;
    }
    float m = -INFINITY, sum = 0.0f;
    for (int64_t j = 0; j < n_kv; ++j) {
      const float s = AttnScoreDot(k + j * kv_stride + col, q16, head_dim) * scale;
      float ms = 1.0f, vs = 1.0f;
      if (s > m) {
        ms = std::exp(m - s);
        m = s;
        for (int d = 0; d < head_dim; ++d) acc[d] = fp16_to_f32(f32_to_fp16(acc[d] * ms));
      } else {
        vs = std::exp(s - m);
      }
      const uint16_t* vj = v + j * kv_stride + col;
      for (int d = 0; d < head_dim; ++d)
        acc[d] = fp16_to_f32(f32_to_fp16(std::fma(fp16_to_f32(vj[d]), vs, acc[d])));
      sum = sum * ms + vs;
    }
    const float inv = sum == 0.0f ? 0.0f : 1.0f / sum;
    float* oh = out + static_cast<int64_t>(h) * head_dim;
    for (int d = 0; d < head_dim; ++d) oh[d] = acc[d] * inv;
  }
}

void AttentionTiled(const float* q, int64_t q_stride, const int32_t* n_vis, int n_q,
                    const uint16_t* k, const uint16_t* v, int64_t kv_stride, int head_dim,
                    float scale, float* out, int64_t out_stride, float* scratch) {
  (void)scratch;
  constexpr int kTile = 64;
  float acc[kMaxHeadDim];
  for (int i = 0; i < n_q; ++i) {
    const float* qi = q + i * q_stride;
    float m = -INFINITY, sum = 0.0f;
    for (int d = 0; d < head_dim; ++d) acc[d] = 0.0f;
    for (int64_t ic = 0; ic < n_vis[i]; ic += kTile) {
      const int n = static_cast<int>(std::min<int64_t>(kTile, n_vis[i] - ic));
      float kq[kTile];
      float tile_max = -INFINITY;
      for (int t = 0; t < kTile; ++t) {
        if (t < n) {
          const uint16_t* kt = k + (ic + t) * kv_stride;
          float dot = 0.0f;
          for (int d = 0; d < head_dim; ++d) dot = std::fma(fp16_to_f32(kt[d]), qi[d], dot);
          kq[t] = dot * scale + 0.0f;  // + the causal mask's 0
        } else {
          kq[t] = -INFINITY;
        }
        tile_max = tile_max > kq[t] ? tile_max : kq[t];
      }
      if (tile_max == -INFINITY) continue;
      const float m_new = std::fmax(m, tile_max);
      if (m_new > m) {
        const float ms = std::exp(m - m_new);
        for (int d = 0; d < head_dim; ++d) acc[d] *= ms;
        sum *= ms;
      }
      m = m_new;
      double tile_sum = 0.0;
      for (int c = 0; c < kTile; c += 16) {
        for (int t = c; t < c + 16; ++t) kq[t] = ExpPoly(kq[t] - m_new);
        tile_sum += static_cast<double>(Reduce16(kq + c));
      }
      sum = static_cast<float>(static_cast<double>(sum) + tile_sum);
      for (int d = 0; d < head_dim; ++d) {
        float a = acc[d];
        for (int t = 0; t < n; ++t)
          a = std::fma(fp16_to_f32(v[(ic + t) * kv_stride + d]), kq[t], a);
        acc[d] = a;
      }
    }
    const float inv = sum == 0.0f ? 0.0f : 1.0f / sum;
    for (int d = 0; d < head_dim; ++d) out[i * out_stride + d] = acc[d] * inv;
  }
}

}  // namespace ref

namespace internal {

const IsaKernels& ScalarKernels() {
  static const IsaKernels k = {
      "scalar",     kScalarTypes,   static_cast<int>(std::size(kScalarTypes)),
      ref::RmsNorm, ref::Softmax,   ref::SiluMul,
      AddScalar,    ref::Attention,
  };
  return k;
}

}  // namespace internal
}  // namespace strata::kernels
