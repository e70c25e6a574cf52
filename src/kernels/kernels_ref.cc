// Scalar reference kernels. These define each kernel's result; the SIMD paths are tested
// against them. They are also the "scalar" dispatch path.
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
  BlockQ8_0* y = static_cast<BlockQ8_0*>(dst);
  for (int64_t b = 0; b < n / kQK; ++b) {
    const float* xb = x + b * kQK;
    float amax = 0.0f;
    for (int i = 0; i < kQK; ++i) amax = std::fmax(amax, std::fabs(xb[i]));
    const float d = amax / 127.0f;
    const float id = amax != 0.0f ? 127.0f / amax : 0.0f;
    y[b].d = f32_to_fp16(d);
    for (int i = 0; i < kQK; ++i) y[b].qs[i] = static_cast<int8_t>(std::nearbyintf(xb[i] * id));
  }
}

// ---- dot products ------------------------------------------------------------------------

float DotF32(int64_t n, const void* w, const void* x) {
  const float* a = static_cast<const float*>(w);
  const float* b = static_cast<const float*>(x);
  float sum = 0.0f;
  for (int64_t i = 0; i < n; ++i) sum += a[i] * b[i];
  return sum;
}

float DotF16(int64_t n, const void* w, const void* x) {
  const uint16_t* a = static_cast<const uint16_t*>(w);
  const uint16_t* b = static_cast<const uint16_t*>(x);
  float sum = 0.0f;
  for (int64_t i = 0; i < n; ++i) sum += fp16_to_f32(a[i]) * fp16_to_f32(b[i]);
  return sum;
}

float DotBF16(int64_t n, const void* w, const void* x) {
  const uint16_t* a = static_cast<const uint16_t*>(w);
  const uint16_t* b = static_cast<const uint16_t*>(x);
  float sum = 0.0f;
  for (int64_t i = 0; i < n; ++i) sum += bf16_to_f32(a[i]) * bf16_to_f32(b[i]);
  return sum;
}

// sum over blocks of (dw * dx) * (exact integer dot of the quants), accumulated in f32.
float DotQ8_0(int64_t n, const void* w, const void* x) {
  const BlockQ8_0* a = static_cast<const BlockQ8_0*>(w);
  const BlockQ8_0* b = static_cast<const BlockQ8_0*>(x);
  float sum = 0.0f;
  for (int64_t blk = 0; blk < n / kQK; ++blk) {
    int32_t sumi = 0;
    for (int i = 0; i < kQK; ++i)
      sumi += static_cast<int32_t>(a[blk].qs[i]) * static_cast<int32_t>(b[blk].qs[i]);
    const float d = fp16_to_f32(a[blk].d) * fp16_to_f32(b[blk].d);
    sum += static_cast<float>(sumi) * d;
  }
  return sum;
}

template <internal::VecDotFn kDot>
void DotTile(int64_t n, const void* w, size_t ws, int nw, const void* x, size_t xs, int nx,
             float* y, size_t ys) {
  for (int i = 0; i < nx; ++i)
    for (int r = 0; r < nw; ++r)
      y[i * ys + r] = kDot(n, static_cast<const uint8_t*>(w) + r * ws,
                           static_cast<const uint8_t*>(x) + i * xs);
}

using internal::TypeKernels;

constexpr TypeKernels kScalarTypes[] = {
    {DType::F32, DType::F32, nullptr, DotF32, DotTile<DotF32>},
    {DType::F16, DType::F16, QuantizeF16, DotF16, DotTile<DotF16>},
    {DType::BF16, DType::BF16, QuantizeBF16, DotBF16, DotTile<DotBF16>},
    {DType::Q8_0, DType::Q8_0, QuantizeQ8_0, DotQ8_0, DotTile<DotQ8_0>},
};

void AddScalar(float* y, const float* x, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] += x[i];
}

const TypeKernels* FindScalarType(DType w) {
  for (const TypeKernels& t : kScalarTypes)
    if (t.weight_type == w) return &t;
  return nullptr;
}

}  // namespace

namespace ref {

void QuantizeActivationRow(DType weight_type, const float* x, void* dst, int64_t n) {
  const TypeKernels* t = FindScalarType(weight_type);
  if (t == nullptr) return;
  if (t->quantize == nullptr) {
    std::memcpy(dst, x, static_cast<size_t>(n) * sizeof(float));
  } else {
    t->quantize(x, dst, n);
  }
}

float VecDot(DType weight_type, int64_t n, const void* w_row, const void* x_row) {
  const TypeKernels* t = FindScalarType(weight_type);
  if (t == nullptr) return std::numeric_limits<float>::quiet_NaN();
  return t->vec_dot(n, w_row, x_row);
}

void MatMul(const void* W, DType w_type, int64_t rows, int64_t cols, const float* X,
            int64_t n_tok, float* Y) {
  const TypeKernels* t = FindScalarType(w_type);
  if (t == nullptr) {
    for (int64_t i = 0; i < rows * n_tok; ++i) Y[i] = std::numeric_limits<float>::quiet_NaN();
    return;
  }
  const size_t w_row = RowBytesUnchecked(w_type, cols);
  const size_t x_row = RowBytesUnchecked(t->vec_dot_type, cols);
  std::vector<uint8_t> xq(x_row);
  const uint8_t* w = static_cast<const uint8_t*>(W);
  for (int64_t tok = 0; tok < n_tok; ++tok) {
    QuantizeActivationRow(w_type, X + tok * cols, xq.data(), cols);
    for (int64_t r = 0; r < rows; ++r) Y[tok * rows + r] = t->vec_dot(cols, w + r * w_row, xq.data());
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
      xh[a] = x0 * c - x1 * s;
      xh[b] = x0 * s + x1 * c;
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

void SiluMul(float* gate, const float* up, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
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
      const uint16_t* kj = k + j * kv_stride + col;
      float dot = 0.0f;
      for (int d = 0; d < head_dim; ++d) dot += q16[d] * fp16_to_f32(kj[d]);
      const float s = dot * scale;
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

}  // namespace ref

namespace internal {

const IsaKernels& ScalarKernels() {
  static const IsaKernels k = {
      "scalar",      kScalarTypes,    static_cast<int>(std::size(kScalarTypes)),
      ref::RmsNorm,  ref::Softmax,    ref::SiluMul,
      AddScalar,     ref::Attention,
  };
  return k;
}

}  // namespace internal
}  // namespace strata::kernels
