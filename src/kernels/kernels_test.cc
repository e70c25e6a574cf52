// Tests of the compute kernels.
//
// 1. The scalar twins (namespace ref) against straightforward double-precision math.
// 2. Every SIMD path this CPU supports (plus "scalar" through the dispatcher) against the
//    twins, over many sizes (odd ones included) and misaligned pointers.
//
// Tolerances (documented here once):
//  * Activation conversion (F16/BF16/Q8_0) must be bit-exact.
//  * Dot products sum n products in a different order than the twin. Rounding errors of a
//    float sum of n terms behave like a random walk of size ~eps*sqrt(n)*sum|terms| (the
//    worst case is eps*n*sum|terms|), so two orders must agree within
//    kDotTol * sqrt(n) * FLT_EPSILON * sum_i |w_i x_i|, kDotTol = 8. With inputs that are
//    small integers every partial sum is exact, and then all paths must agree exactly.
//  * Element-wise kernels using the vectorised exp (Softmax, SiluMul, Attention's softmax):
//    relative 2e-6 (a few ulp of exp plus the division/scale).
//  * RmsNorm: relative 1e-6 (only the order of the double-precision sum differs).
//  * Add and Rope: exact (same arithmetic per element).
#include "kernels/kernels.h"

#include <gtest/gtest.h>

#include <cfloat>
#include <cmath>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "base/fp16.h"
#include "kernels/kernels_impl.h"
#include "tensor/quant.h"

namespace strata::kernels {
namespace {

constexpr double kDotTol = 8.0;

// A byte buffer whose payload starts `offset` bytes after a 64-byte boundary.
class Buffer {
 public:
  Buffer(size_t bytes, size_t offset) : storage_(bytes + offset + 128) {
    uintptr_t p = reinterpret_cast<uintptr_t>(storage_.data());
    p = (p + 63) / 64 * 64 + offset;
    data_ = reinterpret_cast<uint8_t*>(p);
  }
  template <typename T>
  T* as() { return reinterpret_cast<T*>(data_); }
  uint8_t* data() { return data_; }

 private:
  std::vector<uint8_t> storage_;
  uint8_t* data_;
};

std::vector<float> RandomFloats(std::mt19937& rng, int64_t n, float lo, float hi) {
  std::uniform_real_distribution<float> dist(lo, hi);
  std::vector<float> v(static_cast<size_t>(n));
  for (float& f : v) f = dist(rng);
  return v;
}

// Dequantized value i of a row stored in `t` (F32/F16/BF16/Q8_0).
double ValueAt(DType t, const void* row, int64_t i) {
  switch (t) {
    case DType::F32: return static_cast<const float*>(row)[i];
    case DType::F16: return fp16_to_f32(static_cast<const uint16_t*>(row)[i]);
    case DType::BF16: return bf16_to_f32(static_cast<const uint16_t*>(row)[i]);
    case DType::Q8_0: {
      const BlockQ8_0& b = static_cast<const BlockQ8_0*>(row)[i / 32];
      return static_cast<double>(fp16_to_f32(b.d)) * b.qs[i % 32];
    }
    default: return NAN;
  }
}

// The values of a row stored in `t`, decoded in double (exact), and per element the sum of
// the magnitudes of the terms that make it up (|d sc q| + |dmin m| for Q4_K / Q5_K, else the
// value's magnitude): rounding errors of a kernel scale with those, not with the value.
void DecodeRow(DType t, const void* row, int64_t n, std::vector<double>* v,
               std::vector<double>* mag) {
  v->assign(static_cast<size_t>(n), 0.0);
  mag->assign(static_cast<size_t>(n), 0.0);
  auto put = [&](int64_t i, double a, double b) {
    (*v)[i] = a - b;
    (*mag)[i] = std::fabs(a) + std::fabs(b);
  };
  switch (t) {
    case DType::Q4_0:
      for (int64_t i = 0; i < n; ++i) {
        const BlockQ4_0& b = static_cast<const BlockQ4_0*>(row)[i / 32];
        const int e = static_cast<int>(i % 32);
        const int q = (e < 16 ? b.qs[e] & 0xF : b.qs[e - 16] >> 4) - 8;
        put(i, double(fp16_to_f32(b.d)) * q, 0.0);
      }
      return;
    case DType::Q4_K:
    case DType::Q5_K:
      for (int64_t i = 0; i < n; ++i) {
        const bool five = t == DType::Q5_K;
        const uint8_t* blk = static_cast<const uint8_t*>(row) + (i / 256) * (five ? 176 : 144);
        uint16_t d, dmin;
        std::memcpy(&d, blk, 2);
        std::memcpy(&dmin, blk + 2, 2);
        const uint8_t* scales = blk + 4;
        const uint8_t* qh = blk + 16;
        const uint8_t* qs = blk + (five ? 48 : 16);
        const int e = static_cast<int>(i % 256), c = e / 64, l = e % 32;
        const bool high = (e % 64) >= 32;
        int q = high ? qs[32 * c + l] >> 4 : qs[32 * c + l] & 0xF;
        if (five) q |= ((qh[l] >> (2 * c + (high ? 1 : 0))) & 1) << 4;
        uint8_t sc, m;
        UnpackScaleMinK4(scales, e / 32, &sc, &m);
        put(i, double(fp16_to_f32(d)) * sc * q, double(fp16_to_f32(dmin)) * m);
      }
      return;
    case DType::Q6_K:
      for (int64_t i = 0; i < n; ++i) {
        const BlockQ6_K& b = static_cast<const BlockQ6_K*>(row)[i / 256];
        const int e = static_cast<int>(i % 256), h = e / 128, r = e % 128, l = r % 32, k = r / 32;
        const uint8_t lo = b.ql[64 * h + l + (k % 2) * 32];
        const int q = ((k < 2 ? lo & 0xF : lo >> 4) | (((b.qh[32 * h + l] >> (2 * k)) & 3) << 4)) - 32;
        put(i, double(fp16_to_f32(b.d)) * b.scales[e / 16] * q, 0.0);
      }
      return;
    case DType::Q8_K:
      for (int64_t i = 0; i < n; ++i) {
        const BlockQ8_K& b = static_cast<const BlockQ8_K*>(row)[i / 256];
        put(i, double(b.d) * b.qs[i % 256], 0.0);
      }
      return;
    default:
      for (int64_t i = 0; i < n; ++i) put(i, ValueAt(t, row, i), 0.0);
  }
}

// sum |w_i x_i| and the exact (double) dot of a weight row in `t` and an activation row in
// VecDotType(t).
void DoubleDot(DType t, int64_t n, const void* w, const void* x, double* dot, double* abs_sum) {
  std::vector<double> wv, wm, xv, xm;
  DecodeRow(t, w, n, &wv, &wm);
  DecodeRow(VecDotType(t), x, n, &xv, &xm);
  *dot = 0;
  *abs_sum = 0;
  for (int64_t i = 0; i < n; ++i) {
    *dot += wv[i] * xv[i];
    *abs_sum += wm[i] * xm[i];
  }
}

double DotTolerance(int64_t n, double abs_sum) {
  return kDotTol * std::sqrt(static_cast<double>(n) + 1.0) * FLT_EPSILON * abs_sum + 1e-30;
}

const DType kTypes[] = {DType::F32,  DType::F16,  DType::BF16, DType::Q8_0,
                        DType::Q4_0, DType::Q4_K, DType::Q5_K, DType::Q6_K};

int64_t BlockOf(DType t) { return Info(t).block_size; }

// Bytes of an activation row of n elements for weights of type t.
size_t ActBytes(DType t, int64_t n) { return RowBytesUnchecked(VecDotType(t), n); }

// Sizes to test for a type: 1..300 and some large ones (multiples of the block size for the
// quantized types).
std::vector<int64_t> SizesFor(DType t) {
  std::vector<int64_t> sizes;
  if (BlockOf(t) == 1) {
    for (int64_t n = 1; n <= 300; ++n) sizes.push_back(n);
    for (int64_t n : {1000, 4096 + 7, 8960}) sizes.push_back(n);
  } else if (BlockOf(t) == 256) {
    for (int64_t n = 256; n <= 256 * 12; n += 256) sizes.push_back(n);
    for (int64_t n : {4096, 8960}) sizes.push_back(n);
  } else {
    for (int64_t n = 32; n <= 32 * 20; n += 32) sizes.push_back(n);
    for (int64_t n : {1536, 4096 + 32, 8960}) sizes.push_back(n);
  }
  return sizes;
}

// Misalignment offsets in bytes that keep each element type naturally aligned (scalar code
// reads floats / fp16 scales directly; an unaligned access would be UB). Q8_0 rows start at
// any even byte offset in a GGUF file, so odd multiples of 2 are tested for them.
std::vector<size_t> OffsetsFor(DType t) {
  if (t == DType::F32 || t == DType::Q8_K) return {0, 4, 8, 12};  // Q8_K: f32 scale
  return {0, 2, 6, 34};
}

// Random weight row of type t: quantized from floats by the reference quantizer.
void MakeWeightRow(std::mt19937& rng, DType t, int64_t n, void* dst) {
  const std::vector<float> f = RandomFloats(rng, n, -1.0f, 1.0f);
  if (VecDotType(t) == t) {
    ref::QuantizeActivationRow(t, f.data(), dst, n);
  } else {
    QuantizeRow(t, f.data(), dst, n);  // the 4/5/6-bit types: the weight quantizer
  }
}

// ---- 1. reference kernels vs double-precision math ------------------------------------------

TEST(RefKernels, VecDotMatchesDoubleDot) {
  std::mt19937 rng(1);
  for (DType t : kTypes) {
    for (int64_t n : SizesFor(t)) {
      const size_t bytes = RowBytesUnchecked(t, n);
      std::vector<uint8_t> w(bytes), x(ActBytes(t, n));
      MakeWeightRow(rng, t, n, w.data());
      const std::vector<float> xf = RandomFloats(rng, n, -2.0f, 2.0f);
      ref::QuantizeActivationRow(t, xf.data(), x.data(), n);
      double want, abs_sum;
      DoubleDot(t, n, w.data(), x.data(), &want, &abs_sum);
      // Sequential f32 summation: worst-case bound n * eps * sum|terms| (+ per-block scale
      // rounding for Q8_0), statistically far smaller.
      const double got = ref::VecDot(t, n, w.data(), x.data());
      EXPECT_NEAR(got, want, DotTolerance(n, abs_sum)) << DTypeName(t) << " n=" << n;
    }
  }
}

TEST(RefKernels, Q8_0QuantizationIsRoundToNearestEvenWithAmaxScale) {
  std::mt19937 rng(2);
  std::vector<float> x = RandomFloats(rng, 32 * 50, -3.0f, 3.0f);
  // Block 0: amax 127 (so id = 1) with exact ties: 0.5 -> 0, 1.5 -> 2, 2.5 -> 2, -3.5 -> -4.
  for (int i = 0; i < 32; ++i) x[i] = 0.0f;
  x[0] = 127.0f; x[1] = 0.5f; x[2] = 1.5f; x[3] = 2.5f; x[4] = -3.5f;
  // Block 1: all zeros; block 2: negative amax.
  for (int i = 32; i < 64; ++i) x[i] = 0.0f;
  x[64] = -5.0f;
  std::vector<BlockQ8_0> q(50);
  ref::QuantizeActivationRow(DType::Q8_0, x.data(), q.data(), 32 * 50);
  EXPECT_EQ(q[0].qs[1], 0);
  EXPECT_EQ(q[0].qs[2], 2);
  EXPECT_EQ(q[0].qs[3], 2);
  EXPECT_EQ(q[0].qs[4], -4);
  EXPECT_EQ(q[0].qs[0], 127);
  EXPECT_EQ(fp16_to_f32(q[1].d), 0.0f);
  for (int i = 0; i < 32; ++i) EXPECT_EQ(q[1].qs[i], 0);
  EXPECT_EQ(q[2].qs[0], -127);
  for (int b = 0; b < 50; ++b) {
    float amax = 0;
    for (int i = 0; i < 32; ++i) amax = std::max(amax, std::fabs(x[b * 32 + i]));
    EXPECT_EQ(q[b].d, f32_to_fp16(amax / 127.0f));
    const float id = amax != 0 ? 127.0f / amax : 0.0f;
    for (int i = 0; i < 32; ++i) {
      // Within half a step of the exact scaled value.
      EXPECT_LE(std::fabs(q[b].qs[i] - x[b * 32 + i] * id), 0.5f + 1e-4f);
    }
  }
}

TEST(RefKernels, RmsNormMatchesDouble) {
  std::mt19937 rng(3);
  for (int64_t n : {1, 7, 64, 301, 4096}) {
    const std::vector<float> x = RandomFloats(rng, n, -4.0f, 4.0f);
    const std::vector<float> w = RandomFloats(rng, n, 0.5f, 1.5f);
    std::vector<float> y(n);
    ref::RmsNorm(x.data(), w.data(), y.data(), n, 1e-6f);
    double ss = 0;
    for (float v : x) ss += static_cast<double>(v) * v;
    const double scale = 1.0 / std::sqrt(ss / n + 1e-6);
    for (int64_t i = 0; i < n; ++i) EXPECT_NEAR(y[i], x[i] * scale * w[i], 1e-6 * std::fabs(x[i] * scale * w[i]) + 1e-7);
  }
}

TEST(RefKernels, SoftmaxSumsToOneAndMatchesDouble) {
  std::mt19937 rng(4);
  for (int64_t n : {1, 2, 5, 100, 3000}) {
    std::vector<float> x = RandomFloats(rng, n, -30.0f, 30.0f);
    const std::vector<float> orig = x;
    ref::Softmax(x.data(), n);
    // x - max is rounded to float by definition (as in ggml); the rest is exact math.
    float max = -INFINITY;
    double sum = 0, total = 0;
    for (float v : orig) max = std::max(max, v);
    for (float v : orig) sum += std::exp(static_cast<double>(v - max));
    for (int64_t i = 0; i < n; ++i) {
      const double want = std::exp(static_cast<double>(orig[i] - max)) / sum;
      EXPECT_NEAR(x[i], want, 1e-6 * want + 1e-30) << i;
      total += x[i];
    }
    EXPECT_NEAR(total, 1.0, 1e-5);
  }
}

TEST(RefKernels, SoftmaxIgnoresMinusInfinity) {
  std::vector<float> x = {1.0f, -INFINITY, 1.0f, -INFINITY};
  ref::Softmax(x.data(), 4);
  EXPECT_FLOAT_EQ(x[0], 0.5f);
  EXPECT_EQ(x[1], 0.0f);
  EXPECT_FLOAT_EQ(x[2], 0.5f);
  EXPECT_EQ(x[3], 0.0f);
}

TEST(RefKernels, SiluMulMatchesDouble) {
  std::mt19937 rng(5);
  std::vector<float> g = RandomFloats(rng, 500, -20.0f, 20.0f);
  const std::vector<float> u = RandomFloats(rng, 500, -2.0f, 2.0f);
  const std::vector<float> g0 = g;
  ref::SiluMul(g.data(), u.data(), 500);
  for (int i = 0; i < 500; ++i) {
    const double want = g0[i] / (1.0 + std::exp(-static_cast<double>(g0[i]))) * u[i];
    EXPECT_NEAR(g[i], want, 1e-6 * std::fabs(want) + 1e-30);
  }
}

TEST(RefKernels, ExpPolyIsAccurate) {
  for (float x = -103.0f; x < 88.5f; x += 0.0137f) {
    const double want = std::exp(static_cast<double>(x));
    EXPECT_NEAR(ref::ExpPoly(x), want, 4e-7 * want + 1e-44) << x;
  }
  EXPECT_EQ(ref::ExpPoly(0.0f), 1.0f);
  EXPECT_EQ(ref::ExpPoly(-200.0f), 0.0f);
  EXPECT_EQ(ref::ExpPoly(200.0f), INFINITY);
  EXPECT_EQ(ref::ExpPoly(-INFINITY), 0.0f);
  EXPECT_NEAR(ref::SiluPoly(1.0f), 1.0 / (1.0 + std::exp(-1.0)), 1e-7);
}

TEST(RefKernels, RopeMatchesDirectFormulaAndPreservesNorm) {
  std::mt19937 rng(6);
  const int64_t n_heads = 3;
  for (int64_t hd : {2, 8, 64, 128}) {
    for (bool neox : {false, true}) {
      for (bool with_ff : {false, true}) {
        for (int32_t pos : {0, 1, 5, 37}) {
          const float base = 10000.0f;
          const std::vector<float> ff = RandomFloats(rng, hd / 2, 1.0f, 8.0f);
          std::vector<float> x = RandomFloats(rng, n_heads * hd, -1.0f, 1.0f);
          const std::vector<float> x0 = x;
          ref::Rope(x.data(), n_heads, hd, pos, base, with_ff ? ff.data() : nullptr, neox);
          for (int64_t h = 0; h < n_heads; ++h) {
            double n_in = 0, n_out = 0;
            for (int64_t i = 0; i < hd / 2; ++i) {
              const double theta = pos * std::pow(static_cast<double>(base), -2.0 * i / hd) /
                                   (with_ff ? ff[i] : 1.0);
              const int64_t a = h * hd + (neox ? i : 2 * i);
              const int64_t b = h * hd + (neox ? i + hd / 2 : 2 * i + 1);
              const double o0 = x0[a] * std::cos(theta) - x0[b] * std::sin(theta);
              const double o1 = x0[a] * std::sin(theta) + x0[b] * std::cos(theta);
              EXPECT_NEAR(x[a], o0, 1e-5) << hd << " " << neox << " " << pos << " " << i;
              EXPECT_NEAR(x[b], o1, 1e-5);
              n_in += static_cast<double>(x0[a]) * x0[a] + static_cast<double>(x0[b]) * x0[b];
              n_out += static_cast<double>(x[a]) * x[a] + static_cast<double>(x[b]) * x[b];
            }
            EXPECT_NEAR(std::sqrt(n_out), std::sqrt(n_in), 1e-5 * std::sqrt(n_in));
          }
        }
      }
    }
  }
}

// Attention computed directly in double from the f16 cache.
void NaiveAttention(const std::vector<float>& q, const std::vector<uint16_t>& k,
                    const std::vector<uint16_t>& v, int64_t n_kv, int64_t stride, int n_heads,
                    int n_kv_heads, int hd, float scale, std::vector<double>* out) {
  out->assign(static_cast<size_t>(n_heads) * hd, 0.0);
  for (int h = 0; h < n_heads; ++h) {
    const int kvh = h / (n_heads / n_kv_heads);
    std::vector<double> s(n_kv);
    double max = -INFINITY;
    for (int64_t j = 0; j < n_kv; ++j) {
      double d = 0;
      for (int c = 0; c < hd; ++c) d += q[h * hd + c] * static_cast<double>(fp16_to_f32(k[j * stride + kvh * hd + c]));
      s[j] = d * scale;
      max = std::max(max, s[j]);
    }
    double sum = 0;
    for (double& e : s) sum += (e = std::exp(e - max));
    for (int64_t j = 0; j < n_kv; ++j)
      for (int c = 0; c < hd; ++c)
        (*out)[h * hd + c] += s[j] / sum * fp16_to_f32(v[j * stride + kvh * hd + c]);
  }
}

struct AttnCase {
  int n_heads, n_kv_heads, hd;
  int64_t n_kv;
};

const AttnCase kAttnCases[] = {
    {1, 1, 1, 1},   {2, 1, 5, 3},    {4, 2, 16, 17},  {6, 2, 64, 40},
    {12, 2, 128, 9}, {3, 3, 80, 300}, {4, 4, 33, 2},  {14, 2, 64, 129},
    {12, 2, 128, 200},  // several key chunks of the fixed-size AVX-512 path
};

void FillCache(std::mt19937& rng, int64_t n, std::vector<uint16_t>* c) {
  const std::vector<float> f = RandomFloats(rng, n, -1.0f, 1.0f);
  c->resize(n);
  for (int64_t i = 0; i < n; ++i) (*c)[i] = f32_to_fp16(f[i]);
}

TEST(RefKernels, AttentionMatchesNaiveDouble) {
  std::mt19937 rng(7);
  for (const AttnCase& c : kAttnCases) {
    const int64_t stride = static_cast<int64_t>(c.n_kv_heads) * c.hd + 3;
    const std::vector<float> q = RandomFloats(rng, c.n_heads * c.hd, -2.0f, 2.0f);
    std::vector<uint16_t> k, v;
    FillCache(rng, c.n_kv * stride, &k);
    FillCache(rng, c.n_kv * stride, &v);
    const float scale = 1.0f / std::sqrt(static_cast<float>(c.hd));
    std::vector<float> out(c.n_heads * c.hd), scratch(c.n_kv);
    ref::Attention(q.data(), k.data(), v.data(), c.n_kv, stride, c.n_heads, c.n_kv_heads, c.hd,
                   scale, out.data(), scratch.data());
    std::vector<double> want;
    NaiveAttention(q, k, v, c.n_kv, stride, c.n_heads, c.n_kv_heads, c.hd, scale, &want);
    // The f16 rounding of q and of the running value sum (llama.cpp's numerics) costs up to
    // about 2^-11 per step, growing like a random walk over the keys.
    const double tol = 1e-3 * (1.0 + std::sqrt(static_cast<double>(c.n_kv)));
    for (size_t i = 0; i < out.size(); ++i) EXPECT_NEAR(out[i], want[i], tol) << i;
  }
}

// ---- 2. dispatched paths vs the twins --------------------------------------------------------

class PathTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override { ASSERT_TRUE(SetPathForTesting(GetParam().c_str())); }
  void TearDown() override { SetPathForTesting(SupportedPaths().front().c_str()); }
};

// The repacked-weight orders (used by MatMul for Q4_0 / Q4_K with rows % 8 == 0) against
// double-precision math, and different from the plain order in general (so that choosing the
// right one matters and is tested by MatMulMatchesRef).
TEST(RefKernels, RepackOrdersMatchDoubleDot) {
  std::mt19937 rng(3);
  struct Case {
    DType t;
    internal::VecDotFn fn;
  };
  const Case cases[] = {{DType::Q4_0, internal::DotQ4_0Repack},
                        {DType::Q4_K, internal::DotQ4_KRepackGemv},
                        {DType::Q4_K, internal::DotQ4_KRepackGemm}};
  for (const Case& c : cases) {
    int differs = 0;
    for (int64_t n : SizesFor(c.t)) {
      std::vector<uint8_t> w(RowBytesUnchecked(c.t, n)), x(ActBytes(c.t, n));
      MakeWeightRow(rng, c.t, n, w.data());
      const std::vector<float> xf = RandomFloats(rng, n, -2.0f, 2.0f);
      ref::QuantizeActivationRow(c.t, xf.data(), x.data(), n);
      double want, abs_sum;
      DoubleDot(c.t, n, w.data(), x.data(), &want, &abs_sum);
      const float got = c.fn(n, w.data(), x.data());
      EXPECT_NEAR(got, want, DotTolerance(n, abs_sum)) << DTypeName(c.t) << " n=" << n;
      differs += got != ref::VecDot(c.t, n, w.data(), x.data());
    }
    EXPECT_GT(differs, 0) << DTypeName(c.t);
  }
}

TEST(Dispatch, PathsAndHooks) {
  const std::vector<std::string> paths = SupportedPaths();
  ASSERT_FALSE(paths.empty());
  EXPECT_EQ(paths.back(), "scalar");
  EXPECT_EQ(std::string(ActivePath()), paths.front());
  EXPECT_FALSE(SetPathForTesting("sse9"));
  EXPECT_EQ(std::string(ActivePath()), paths.front());
  for (const std::string& p : paths) {
    EXPECT_TRUE(SetPathForTesting(p.c_str()));
    EXPECT_EQ(std::string(ActivePath()), p);
  }
  SetPathForTesting(paths.front().c_str());
  std::printf("kernel paths on this CPU:");
  for (const std::string& p : paths) std::printf(" %s", p.c_str());
  std::printf("\n");
}

TEST(Dispatch, VecDotTypes) {
  EXPECT_EQ(VecDotType(DType::F32), DType::F32);
  EXPECT_EQ(VecDotType(DType::F16), DType::F16);
  EXPECT_EQ(VecDotType(DType::BF16), DType::BF16);
  EXPECT_EQ(VecDotType(DType::Q8_0), DType::Q8_0);
  EXPECT_EQ(VecDotType(DType::Q4_0), DType::Q8_0);
  EXPECT_EQ(VecDotType(DType::Q4_K), DType::Q8_K);
  EXPECT_EQ(VecDotType(DType::Q5_K), DType::Q8_K);
  EXPECT_EQ(VecDotType(DType::Q6_K), DType::Q8_K);
  for (DType t : kTypes) EXPECT_TRUE(SupportsWeightType(t));
  EXPECT_FALSE(SupportsWeightType(DType::Q4_1));
  EXPECT_FALSE(SupportsWeightType(DType::Q3_K));
}

TEST_P(PathTest, QuantizeActivationIsBitExact) {
  std::mt19937 rng(10);
  for (DType t : {DType::F16, DType::BF16, DType::Q8_0, DType::Q4_K}) {
    for (int64_t n : SizesFor(t)) {
      for (size_t off : {0, 4, 12}) {
        Buffer xb(n * sizeof(float), off);
        float* x = xb.as<float>();
        // Mix of magnitudes: normal, f16-subnormal, beyond f16 range, exact halves.
        std::uniform_int_distribution<int> kind(0, 9);
        std::uniform_real_distribution<float> u(-1.0f, 1.0f);
        for (int64_t i = 0; i < n; ++i) {
          const int kd = kind(rng);
          x[i] = kd == 0 ? u(rng) * 1e-6f : kd == 1 ? u(rng) * 1e5f
                 : kd == 2 ? std::round(u(rng) * 100.0f) + 0.5f : u(rng) * 3.0f;
        }
        const size_t bytes = ActBytes(t, n);
        for (size_t qoff : OffsetsFor(VecDotType(t))) {
          Buffer got(bytes, qoff), want(bytes, 0);
          QuantizeActivationRow(t, x, got.data(), n);
          ref::QuantizeActivationRow(t, x, want.data(), n);
          ASSERT_EQ(std::memcmp(got.data(), want.data(), bytes), 0)
              << DTypeName(t) << " n=" << n << " off=" << off << "/" << qoff;
        }
      }
    }
  }
}

// Q8_K activations: the sign of the scale comes from the FIRST value of largest magnitude,
// so blocks where +m and -m both occur (in either order, in any lane) must match the twin;
// all-zero blocks too.
TEST_P(PathTest, Q8KActivationsFirstLargestMagnitude) {
  std::mt19937 rng(31);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  std::uniform_int_distribution<int> pos(0, 255);
  const int64_t n = 4 * 256;
  for (int round = 0; round < 50; ++round) {
    std::vector<float> x(n);
    for (float& f : x) f = u(rng);
    for (int b = 0; b < 3; ++b) {
      const float m = 1.5f + static_cast<float>(round);
      x[b * 256 + pos(rng)] = round % 2 == 0 ? m : -m;
      x[b * 256 + pos(rng)] = round % 2 == 0 ? -m : m;
    }
    std::fill(x.begin() + 3 * 256, x.end(), round % 3 == 0 ? -0.0f : 0.0f);
    const size_t bytes = ActBytes(DType::Q4_K, n);
    std::vector<uint8_t> got(bytes), want(bytes);
    QuantizeActivationRow(DType::Q4_K, x.data(), got.data(), n);
    ref::QuantizeActivationRow(DType::Q4_K, x.data(), want.data(), n);
    ASSERT_EQ(std::memcmp(got.data(), want.data(), bytes), 0) << "round " << round;
  }
}

TEST_P(PathTest, VecDotMatchesRef) {
  std::mt19937 rng(11);
  for (DType t : kTypes) {
    const std::vector<size_t> offs = OffsetsFor(t), xoffs = OffsetsFor(VecDotType(t));
    int k = 0;
    for (int64_t n : SizesFor(t)) {
      const size_t bytes = RowBytesUnchecked(t, n);
      Buffer w(bytes, offs[k % offs.size()]), x(ActBytes(t, n), xoffs[(k + 1) % xoffs.size()]);
      ++k;
      MakeWeightRow(rng, t, n, w.data());
      const std::vector<float> xf = RandomFloats(rng, n, -2.0f, 2.0f);
      ref::QuantizeActivationRow(t, xf.data(), x.data(), n);
      double exact, abs_sum;
      DoubleDot(t, n, w.data(), x.data(), &exact, &abs_sum);
      const float want = ref::VecDot(t, n, w.data(), x.data());
      const float got = VecDot(t, n, w.data(), x.data());
      ASSERT_NEAR(got, want, 2 * DotTolerance(n, abs_sum)) << DTypeName(t) << " n=" << n;
      // Every path follows llama.cpp's accumulation order (the scalar twin's), so the results
      // are not just close but identical.
      ASSERT_EQ(f32_to_bits(got), f32_to_bits(want)) << DTypeName(t) << " n=" << n << " "
                                                     << got << " vs " << want;
    }
  }
}

// Small-integer inputs: every partial sum is exact, so all summation orders agree exactly.
TEST_P(PathTest, VecDotExactOnIntegers) {
  std::mt19937 rng(12);
  std::uniform_int_distribution<int> small(-4, 4), quant(-16, 16);
  for (DType t : kTypes) {
    if (VecDotType(t) != t) continue;  // the 4/5/6-bit types: covered by VecDotMatchesRef
    for (int64_t n : SizesFor(t)) {
      const size_t bytes = RowBytesUnchecked(t, n);
      Buffer w(bytes, 2 * (t != DType::F32)), x(bytes, 0);
      if (t == DType::Q8_0) {
        for (int b = 0; b < n / 32; ++b) {
          BlockQ8_0* wb = w.as<BlockQ8_0>() + b;
          BlockQ8_0* xb = x.as<BlockQ8_0>() + b;
          uint16_t dw = f32_to_fp16(1.0f), dx = f32_to_fp16(0.5f);
          std::memcpy(&wb->d, &dw, 2);
          std::memcpy(&xb->d, &dx, 2);
          for (int i = 0; i < 32; ++i) {
            wb->qs[i] = static_cast<int8_t>(quant(rng));
            xb->qs[i] = static_cast<int8_t>(quant(rng));
          }
          wb->qs[b % 32] = (b % 3 == 0) ? -128 : 127;  // extreme weights are legal in files
        }
      } else {
        std::vector<float> wf(n), xf(n);
        for (int64_t i = 0; i < n; ++i) wf[i] = static_cast<float>(small(rng));
        for (int64_t i = 0; i < n; ++i) xf[i] = static_cast<float>(small(rng));
        ref::QuantizeActivationRow(t, wf.data(), w.data(), n);
        ref::QuantizeActivationRow(t, xf.data(), x.data(), n);
      }
      double exact, abs_sum;
      DoubleDot(t, n, w.data(), x.data(), &exact, &abs_sum);
      ASSERT_EQ(ref::VecDot(t, n, w.data(), x.data()), static_cast<float>(exact));
      ASSERT_EQ(VecDot(t, n, w.data(), x.data()), static_cast<float>(exact))
          << DTypeName(t) << " n=" << n;
    }
  }
}

// llama.cpp (x86) repacks Q4_0 / Q4_K weights with rows % 8 == 0 and then uses the orders of
// its repacked kernels instead of vec_dot's, even for a single token.
bool RepackedByLlamaCpp(DType t, int64_t rows) {
  return (t == DType::Q4_0 || t == DType::Q4_K) && rows % 8 == 0;
}

struct MatMulShape {
  DType t;
  int64_t rows, cols;
};

void CheckMatMul(const MatMulShape& s, int64_t n_tok, ThreadPool* pool, std::mt19937& rng,
                 std::vector<uint8_t>* scratch) {
  const size_t w_row = RowBytesUnchecked(s.t, s.cols);
  Buffer w(w_row * s.rows, s.t == DType::F32 ? 4 : 2);
  for (int64_t r = 0; r < s.rows; ++r) MakeWeightRow(rng, s.t, s.cols, w.data() + r * w_row);
  const std::vector<float> x = RandomFloats(rng, n_tok * s.cols, -1.0f, 1.0f);
  std::vector<float> y(n_tok * s.rows, -1.0f), want(n_tok * s.rows);
  MatMul(w.data(), s.t, s.rows, s.cols, x.data(), n_tok, y.data(), pool, scratch);
  ref::MatMul(w.data(), s.t, s.rows, s.cols, x.data(), n_tok, want.data());
  // Every path uses llama.cpp's accumulation orders (the per-row vec_dot order for one token
  // or unaligned shapes, the GEMM order otherwise), so results equal the scalar twin's
  // exactly; for a single token they are the dispatched VecDot's.
  const size_t x_row = RowBytesUnchecked(VecDotType(s.t), s.cols);
  std::vector<uint8_t> xq(x_row);
  const std::string where = std::string(DTypeName(s.t)) + " rows=" + std::to_string(s.rows) +
                            " cols=" + std::to_string(s.cols) + " n_tok=" +
                            std::to_string(n_tok) + " threads=" +
                            std::to_string(pool ? pool->size() : 0);
  for (int64_t t = 0; t < n_tok; ++t) {
    QuantizeActivationRow(s.t, x.data() + t * s.cols, xq.data(), s.cols);
    for (int64_t r = 0; r < s.rows; ++r) {
      const float got = y[t * s.rows + r];
      ASSERT_EQ(f32_to_bits(got), f32_to_bits(want[t * s.rows + r])) << where;
      if (n_tok == 1 && !RepackedByLlamaCpp(s.t, s.rows)) {
        ASSERT_EQ(got, VecDot(s.t, s.cols, w.data() + r * w_row, xq.data())) << where;
      }
      double exact, abs_sum;
      DoubleDot(s.t, s.cols, w.data() + r * w_row, xq.data(), &exact, &abs_sum);
      ASSERT_NEAR(got, want[t * s.rows + r], 2 * DotTolerance(s.cols, abs_sum)) << where;
    }
  }
}

TEST_P(PathTest, MatMulMatchesRef) {
  std::mt19937 rng(13);
  ThreadPool p1(1), p2(2), p3(3);
  ThreadPool* pools[] = {nullptr, &p1, &p2, &p3};
  const MatMulShape shapes[] = {
      {DType::Q8_0, 1, 32},  {DType::Q8_0, 67, 96},  {DType::Q8_0, 13, 320},
      {DType::F32, 7, 13},   {DType::F32, 31, 64},   {DType::F16, 5, 33},
      {DType::F16, 29, 130}, {DType::BF16, 11, 17},  {DType::BF16, 23, 96},
      // GEMM-order shapes (rows a multiple of 4, row length of the GEMM step).
      {DType::Q8_0, 64, 96}, {DType::F32, 32, 64},   {DType::F16, 28, 144},
      {DType::BF16, 24, 96}, {DType::F32, 8, 200},
      // 4/5/6-bit types: plain vec_dot order (rows % 8 != 0; for Q4_0 also tinyBLAS's, which
      // is the same), and llama.cpp's repacked orders (Q4_0 / Q4_K with rows % 8 == 0: GEMM
      // for groups of 4 tokens, GEMV for the rest).
      {DType::Q4_0, 13, 96}, {DType::Q4_0, 36, 64},   {DType::Q4_0, 64, 96},
      {DType::Q4_K, 13, 256}, {DType::Q4_K, 20, 512}, {DType::Q4_K, 16, 512},
      {DType::Q5_K, 8, 256},  {DType::Q5_K, 11, 512}, {DType::Q6_K, 12, 512},
      {DType::Q6_K, 5, 256},
  };
  std::vector<uint8_t> scratch;  // shared across calls: reused and grown
  for (const MatMulShape& s : shapes)
    for (int64_t n_tok : {1, 2, 3, 7, 16, 33})
      for (ThreadPool* pool : pools) CheckMatMul(s, n_tok, pool, rng, &scratch);
}

// The ISA table behind a path name.
const internal::IsaKernels& TableOf(const std::string& path) {
#if defined(__x86_64__)
  if (path == "avx512") return internal::Avx512Kernels();
  if (path == "avx2") return internal::Avx2Kernels();
#elif defined(__aarch64__)
  if (path == "neon") return internal::NeonKernels();
#endif
  return internal::ScalarKernels();
}

// Random bytes over the quantized levels and scales of each block of a 4/5/6-bit row (its
// fp16 scales kept), so that every level / scale combination occurs, extremes included.
void ScrambleLevels(std::mt19937& rng, DType t, int64_t n, uint8_t* row) {
  std::uniform_int_distribution<int> byte(0, 255);
  const size_t bs = RowBytesUnchecked(t, kQK_K);
  for (int64_t blk = 0; blk < n / kQK_K; ++blk) {
    uint8_t* b = row + blk * bs;
    // Q4_K / Q5_K: fp16 d, dmin first; Q6_K: fp16 d last.
    const size_t begin = t == DType::Q6_K ? 0 : 4, end = t == DType::Q6_K ? bs - 2 : bs;
    for (size_t k = begin; k < end; ++k) b[k] = static_cast<uint8_t>(byte(rng));
  }
}

// Every tile function of the low-bit types (vec_dot_tile, repack_tile) against the scalar
// twin's order entry by entry, bit for bit, over sizes, all nw x nx shapes, strides with
// padding and misaligned rows. Entries outside the nw x nx tile must stay untouched.
TEST_P(PathTest, LowbitTilesMatchScalarPerEntry) {
  std::mt19937 rng(15);
  const internal::IsaKernels& isa = TableOf(GetParam());
  const internal::IsaKernels& ref_isa = internal::ScalarKernels();
  constexpr int kR = internal::kMaxDotRows, kC = internal::kMaxDotCols;
  constexpr size_t kYs = kR + 3;  // y stride (floats) wider than the tile
  for (DType t : {DType::Q4_0, DType::Q4_K, DType::Q5_K, DType::Q6_K}) {
    const internal::TypeKernels* tk = internal::FindType(isa, t);
    const internal::TypeKernels* rk = internal::FindType(ref_isa, t);
    ASSERT_NE(tk, nullptr);
    ASSERT_NE(rk, nullptr);
    struct Slot {
      const char* name;
      internal::VecDotTileFn fn, want;
    };
    // repack_gemv_tile: entries of the scalar twin's repack_vec_dot.
    const internal::VecDotTileFn gemv_want =
        t == DType::Q4_K   ? internal::PerEntryTile<internal::DotQ4_KRepackGemv>
        : t == DType::Q4_0 ? internal::PerEntryTile<internal::DotQ4_0Repack>
                           : nullptr;
    const Slot slots[] = {{"vec_dot_tile", tk->vec_dot_tile, rk->vec_dot_tile},
                          {"repack_tile", tk->repack_tile, rk->repack_tile},
                          {"repack_gemv_tile", tk->repack_gemv_tile, gemv_want}};
    std::vector<int64_t> sizes = SizesFor(t);
    if (BlockOf(t) != 256) sizes = {32, 64, 96, 256, 1536};
    for (int64_t n : sizes) {
      const size_t w_row = RowBytesUnchecked(t, n), x_row = ActBytes(t, n);
      const size_t ws = w_row + 2 * (n % 3), xs = x_row + 4 * (n % 2);  // padded strides
      Buffer w(ws * kR, 2), x(xs * kC, t == DType::Q4_0 ? 2 : 4);
      for (int r = 0; r < kR; ++r) {
        MakeWeightRow(rng, t, n, w.data() + r * ws);
        if (BlockOf(t) == 256 && (n / 256 + r) % 2 == 0) ScrambleLevels(rng, t, n, w.data() + r * ws);
      }
      for (int c = 0; c < kC; ++c) {
        const std::vector<float> xf = RandomFloats(rng, n, -2.0f, 2.0f);
        ref::QuantizeActivationRow(t, xf.data(), x.data() + c * xs, n);
      }
      // The single-row function of the repacked GEMV order too.
      if (tk->repack_vec_dot != nullptr) {
        ASSERT_NE(rk->repack_vec_dot, nullptr);
        for (int c = 0; c < kC; ++c)
          for (int r = 0; r < kR; ++r)
            ASSERT_EQ(f32_to_bits(tk->repack_vec_dot(n, w.data() + r * ws, x.data() + c * xs)),
                      f32_to_bits(rk->repack_vec_dot(n, w.data() + r * ws, x.data() + c * xs)))
                << DTypeName(t) << " repack_vec_dot n=" << n << " row " << r << " token " << c;
      }
      for (const Slot& sl : slots) {
        if (sl.fn == nullptr) continue;
        ASSERT_NE(sl.want, nullptr);
        float want[kC][kR];
        for (int c = 0; c < kC; ++c)
          for (int r = 0; r < kR; ++r)
            sl.want(n, w.data() + r * ws, ws, 1, x.data() + c * xs, xs, 1, &want[c][r], 1);
        for (int nw = 1; nw <= kR; ++nw)
          for (int nx = 1; nx <= kC; ++nx) {
            std::vector<float> y(kC * kYs, -7.0f);
            sl.fn(n, w.data(), ws, nw, x.data(), xs, nx, y.data(), kYs);
            for (int c = 0; c < kC; ++c)
              for (size_t r = 0; r < kYs; ++r) {
                const float got = y[c * kYs + r];
                if (c < nx && static_cast<int>(r) < nw) {
                  ASSERT_EQ(f32_to_bits(got), f32_to_bits(want[c][r]))
                      << DTypeName(t) << " " << sl.name << " n=" << n << " nw=" << nw
                      << " nx=" << nx << " entry (" << r << ", " << c << ")";
                } else {
                  ASSERT_EQ(got, -7.0f) << DTypeName(t) << " " << sl.name << " wrote outside";
                }
              }
          }
      }
    }
  }
}

// The prepared-activation GEMM tiles (TypeKernels::prepared_tile, where a table has them)
// against the scalar twin's vec_dot_tile entry by entry, bit for bit: every nw x nx shape,
// groups prepared from 1..4 tokens, padded strides, misaligned weight rows, and Q8_0 blocks
// with the extreme bytes -128 / 127 on both sides. Entries outside the tile stay untouched.
TEST_P(PathTest, PreparedTilesMatchScalarPerEntry) {
  std::mt19937 rng(21);
  std::uniform_int_distribution<int> byte(-128, 127);
  const internal::IsaKernels& isa = TableOf(GetParam());
  constexpr int kR = internal::kMaxDotRows, kC = internal::kMaxDotCols;
  constexpr size_t kYs = kR + 3;
  int checked = 0;
  for (int i = 0; i < isa.n_types; ++i) {
    const internal::TypeKernels& tk = isa.types[i];
    const bool any = tk.prepare_tile_x != nullptr || tk.tile_x_bytes != nullptr ||
                     tk.prepared_tile != nullptr;
    if (!any) continue;
    ASSERT_TRUE(tk.prepare_tile_x != nullptr && tk.tile_x_bytes != nullptr &&
                tk.prepared_tile != nullptr) << DTypeName(tk.weight_type);
    const DType t = tk.weight_type;
    ASSERT_TRUE(t == DType::Q8_0 || t == DType::Q4_K || t == DType::Q4_0)
        << "extend this test for " << DTypeName(t);
    const internal::TypeKernels* rk = internal::FindType(internal::ScalarKernels(), t);
    // The tile of the order the prepared tile stands for: llama.cpp's repacked GEMM where the
    // type has one (Q4_K, Q4_0), else the GEMM order of vec_dot_tile.
    const internal::VecDotTileFn want_tile =
        tk.repack_tile != nullptr ? rk->repack_tile : rk->vec_dot_tile;
    const std::vector<int64_t> sizes = t != DType::Q4_K
                                           ? std::vector<int64_t>{32, 64, 96, 320, 1536, 4096 + 32}
                                           : std::vector<int64_t>{256, 512, 1536, 4096 + 256};
    for (int64_t n : sizes) {
      const size_t row = RowBytesUnchecked(t, n), xrow = ActBytes(t, n);
      const size_t ws = row + 2 * (n % 3 + 1), xs = xrow + 4 * (n % 2);
      Buffer w(ws * kR, 2), x(xs * kC, 4);
      for (int r = 0; r < kR; ++r) {
        MakeWeightRow(rng, t, n, w.data() + r * ws);
        if (t == DType::Q4_K) {
          if (r % 2 == 0) ScrambleLevels(rng, t, n, w.data() + r * ws);
          continue;
        }
        if (t == DType::Q4_0) continue;  // every nibble is a legal level
        for (int64_t b = 0; b < n / 32; ++b) {  // extreme weights are legal in files
          BlockQ8_0* wb = reinterpret_cast<BlockQ8_0*>(w.data() + r * ws) + b;
          wb->qs[(b + r) % 32] = (b % 2 == 0) ? -128 : 127;
        }
      }
      for (int c = 0; c < kC; ++c) {
        if (t == DType::Q4_K) {  // Q8_K rows of random values (quants up to +-127)
          const std::vector<float> xf = RandomFloats(rng, n, -2.0f, 2.0f);
          ref::QuantizeActivationRow(t, xf.data(), x.data() + c * xs, n);
          continue;
        }
        for (int64_t b = 0; b < n / 32; ++b) {  // raw blocks: any byte, scales of either sign
          BlockQ8_0* xb = reinterpret_cast<BlockQ8_0*>(x.data() + c * xs) + b;
          for (int k = 0; k < 32; ++k) xb->qs[k] = static_cast<int8_t>(byte(rng));
          const uint16_t d = f32_to_fp16((byte(rng) + 0.5f) / 1000.0f);
          std::memcpy(&xb->d, &d, 2);
        }
      }
      float want[kC][kR];
      for (int c = 0; c < kC; ++c)
        for (int r = 0; r < kR; ++r)
          want_tile(n, w.data() + r * ws, ws, 1, x.data() + c * xs, xs, 1, &want[c][r], 1);
      const size_t gbytes = tk.tile_x_bytes(n);
      ++checked;
      for (int prepared = 1; prepared <= kC; ++prepared) {
        Buffer g(gbytes, 0);  // MatMul hands 64-byte aligned groups
        tk.prepare_tile_x(x.data(), xs, prepared, g.data(), n);
        for (int nw = 1; nw <= kR; ++nw)
          for (int nx = 1; nx <= prepared; ++nx) {
            std::vector<float> y(kC * kYs, -7.0f);
            tk.prepared_tile(n, w.data(), ws, nw, g.data(), gbytes, nx, y.data(), kYs);
            for (int c = 0; c < kC; ++c)
              for (size_t r = 0; r < kYs; ++r) {
                const float got = y[c * kYs + r];
                if (c < nx && static_cast<int>(r) < nw) {
                  ASSERT_EQ(f32_to_bits(got), f32_to_bits(want[c][r]))
                      << DTypeName(t) << " n=" << n << " prepared=" << prepared << " nw=" << nw
                      << " nx=" << nx
                      << " entry (" << r << ", " << c << ")";
                } else {
                  ASSERT_EQ(got, -7.0f) << "wrote outside the tile";
                }
              }
          }
      }
    }
  }
  // The AVX-512 table prepares Q8_0, Q4_K and Q4_0 activations.
  if (GetParam() == "avx512") {
    EXPECT_EQ(checked, 16);
  }
}

// Large enough that MatMul's cache blocking splits rows and tokens into several tiles.
TEST_P(PathTest, MatMulTiled) {
  std::mt19937 rng(14);
  ThreadPool p2(2), p3(3);
  std::vector<uint8_t> scratch;
  CheckMatMul({DType::Q8_0, 130, 4096}, 67, &p3, rng, &scratch);
  // GEMM order (rows % 4 == 0), split into several row and token cache tiles.
  CheckMatMul({DType::Q8_0, 132, 4096}, 67, &p3, rng, &scratch);
  CheckMatMul({DType::F16, 70, 2048 + 5}, 70, &p2, rng, &scratch);
  CheckMatMul({DType::F16, 72, 2048}, 70, &p2, rng, &scratch);
  CheckMatMul({DType::BF16, 36, 1024}, 9, &p3, rng, &scratch);
  // Repacked orders: GEMM for tokens 0..3, GEMV for the rest; more than one row tile.
  CheckMatMul({DType::Q4_K, 136, 4096}, 6, &p3, rng, &scratch);
  CheckMatMul({DType::Q4_0, 120, 4096}, 5, &p2, rng, &scratch);
}

TEST_P(PathTest, RmsNormMatchesRef) {
  std::mt19937 rng(15);
  std::vector<int64_t> sizes;
  for (int64_t n = 1; n <= 300; ++n) sizes.push_back(n);
  for (int64_t n : {1536, 4096 + 3, 8960}) sizes.push_back(n);
  for (int64_t n : sizes) {
    for (bool alias : {false, true}) {
      Buffer xb(n * 4, 4 * (n % 4)), wb(n * 4, 4), yb(n * 4, 8);
      const std::vector<float> xv = RandomFloats(rng, n, -3.0f, 3.0f);
      const std::vector<float> wv = RandomFloats(rng, n, 0.5f, 1.5f);
      std::memcpy(xb.data(), xv.data(), n * 4);
      std::memcpy(wb.data(), wv.data(), n * 4);
      std::vector<float> want(n);
      ref::RmsNorm(xv.data(), wv.data(), want.data(), n, 1e-5f);
      float* y = alias ? xb.as<float>() : yb.as<float>();
      RmsNorm(xb.as<float>(), wb.as<float>(), y, n, 1e-5f);
      for (int64_t i = 0; i < n; ++i)
        ASSERT_NEAR(y[i], want[i], 1e-6f * std::fabs(want[i]) + 1e-30f) << n << " " << i;
    }
  }
}

TEST_P(PathTest, SoftmaxMatchesRef) {
  std::mt19937 rng(16);
  std::vector<int64_t> sizes;
  for (int64_t n = 1; n <= 300; ++n) sizes.push_back(n);
  for (int64_t n : {1000, 4096 + 5}) sizes.push_back(n);
  for (int64_t n : sizes) {
    std::vector<float> v = RandomFloats(rng, n, -40.0f, 40.0f);
    if (n > 3) v[n / 2] = -INFINITY;
    Buffer xb(n * 4, 4 * (n % 4));
    float* x = xb.as<float>();
    std::memcpy(x, v.data(), n * 4);
    ref::Softmax(v.data(), n);
    Softmax(x, n);
    for (int64_t i = 0; i < n; ++i) ASSERT_NEAR(x[i], v[i], 2e-6f * v[i] + 1e-37f) << n << " " << i;
  }
}

TEST_P(PathTest, SiluMulMatchesRef) {
  std::mt19937 rng(17);
  for (int64_t n = 1; n <= 300; ++n) {
    std::vector<float> g = RandomFloats(rng, n, n % 5 == 0 ? -100.0f : -15.0f, n % 5 == 0 ? 100.0f : 15.0f);
    const std::vector<float> u = RandomFloats(rng, n, -2.0f, 2.0f);
    Buffer gb(n * 4, 4 * (n % 4)), ub(n * 4, 4 * ((n + 1) % 4));
    std::memcpy(gb.data(), g.data(), n * 4);
    std::memcpy(ub.data(), u.data(), n * 4);
    ref::SiluMul(g.data(), u.data(), n);
    SiluMul(gb.as<float>(), ub.as<float>(), n);
    // Same polynomial exp (llama.cpp's) on every path: identical results.
    for (int64_t i = 0; i < n; ++i)
      ASSERT_EQ(f32_to_bits(gb.as<float>()[i]), f32_to_bits(g[i])) << n << " " << i;
  }
}

TEST_P(PathTest, AddIsExact) {
  std::mt19937 rng(18);
  for (int64_t n = 1; n <= 300; ++n) {
    std::vector<float> y = RandomFloats(rng, n, -5.0f, 5.0f);
    const std::vector<float> x = RandomFloats(rng, n, -5.0f, 5.0f);
    Buffer yb(n * 4, 4 * (n % 4)), xb(n * 4, 4 * ((n + 2) % 4));
    std::memcpy(yb.data(), y.data(), n * 4);
    std::memcpy(xb.data(), x.data(), n * 4);
    Add(yb.as<float>(), xb.as<float>(), n);
    for (int64_t i = 0; i < n; ++i) ASSERT_EQ(yb.as<float>()[i], y[i] + x[i]);
  }
}

TEST_P(PathTest, RopeMatchesRefExactly) {
  std::mt19937 rng(19);
  for (int64_t hd : {2, 6, 64, 128}) {
    for (bool neox : {false, true}) {
      for (int32_t pos : {0, 3, 1000, 32767}) {
        const std::vector<float> ff = RandomFloats(rng, hd / 2, 1.0f, 4.0f);
        std::vector<float> x = RandomFloats(rng, 5 * hd, -1.0f, 1.0f);
        std::vector<float> want = x;
        Rope(x.data(), 5, hd, pos, 1e6f, pos % 2 ? ff.data() : nullptr, neox);
        ref::Rope(want.data(), 5, hd, pos, 1e6f, pos % 2 ? ff.data() : nullptr, neox);
        ASSERT_EQ(std::memcmp(x.data(), want.data(), x.size() * 4), 0);
      }
    }
  }
}

TEST_P(PathTest, AttentionMatchesRef) {
  std::mt19937 rng(20);
  for (const AttnCase& c : kAttnCases) {
    const int64_t stride = static_cast<int64_t>(c.n_kv_heads) * c.hd + 5;
    const std::vector<float> q = RandomFloats(rng, c.n_heads * c.hd, -3.0f, 3.0f);
    std::vector<uint16_t> k, v;
    FillCache(rng, c.n_kv * stride + 1, &k);
    FillCache(rng, c.n_kv * stride + 1, &v);
    const float scale = 1.0f / std::sqrt(static_cast<float>(c.hd));
    std::vector<float> want(c.n_heads * c.hd), scratch(c.n_kv);
    ref::Attention(q.data(), k.data(), v.data(), c.n_kv, stride, c.n_heads, c.n_kv_heads, c.hd,
                   scale, want.data(), scratch.data());
    // Misaligned cache (odd fp16 element offset) and output.
    Buffer out(c.n_heads * c.hd * 4, 4);
    std::fill(scratch.begin(), scratch.end(), NAN);
    Attention(q.data(), k.data() + 1, v.data() + 1, c.n_kv, stride, c.n_heads, c.n_kv_heads,
              c.hd, scale, out.as<float>(), scratch.data());
    std::vector<float> want_off(c.n_heads * c.hd);
    ref::Attention(q.data(), k.data() + 1, v.data() + 1, c.n_kv, stride, c.n_heads,
                   c.n_kv_heads, c.hd, scale, want_off.data(), scratch.data());
    // Every path computes q.k in the same (llama.cpp's) order, so results are identical.
    for (size_t i = 0; i < want_off.size(); ++i)
      ASSERT_EQ(f32_to_bits(out.as<float>()[i]), f32_to_bits(want_off[i]))
          << c.hd << " " << c.n_kv << " " << i;
    // The offset copy is a different problem: make sure it is not trivially equal.
    EXPECT_NE(std::memcmp(want.data(), want_off.data(), want.size() * 4), 0);
  }
}

// With inputs whose q.k products and sums are exact in any order, every path must reproduce
// the scalar twin bit for bit: same f16 rounding of q, same online softmax, same f16 running
// sum with fused multiply-add.
TEST_P(PathTest, AttentionBitExactOnExactInputs) {
  std::mt19937 rng(21);
  std::uniform_int_distribution<int> qd(-8, 8), kd(-16, 16);
  for (const AttnCase& c : kAttnCases) {
    const int64_t stride = static_cast<int64_t>(c.n_kv_heads) * c.hd;
    std::vector<float> q(static_cast<size_t>(c.n_heads * c.hd));
    for (float& x : q) x = static_cast<float>(qd(rng)) / 4.0f;
    std::vector<uint16_t> k(static_cast<size_t>(c.n_kv * stride)), v(k.size());
    for (auto& x : k) x = f32_to_fp16(static_cast<float>(kd(rng)) / 8.0f);
    std::vector<float> vf = RandomFloats(rng, static_cast<int64_t>(v.size()), -1.0f, 1.0f);
    for (size_t i = 0; i < v.size(); ++i) v[i] = f32_to_fp16(vf[i]);
    const float scale = 0.25f;
    std::vector<float> want(q.size()), got(q.size()), scratch(c.n_kv);
    ref::Attention(q.data(), k.data(), v.data(), c.n_kv, stride, c.n_heads, c.n_kv_heads, c.hd,
                   scale, want.data(), scratch.data());
    Attention(q.data(), k.data(), v.data(), c.n_kv, stride, c.n_heads, c.n_kv_heads, c.hd, scale,
              got.data(), scratch.data());
    EXPECT_EQ(0, std::memcmp(want.data(), got.data(), want.size() * sizeof(float)))
        << GetParam() << " hd " << c.hd << " n_kv " << c.n_kv;
  }
}

// Tiled prompt attention (llama.cpp's order for batches of >= 64 tokens): every path bit for
// bit equal to the scalar twin, over head sizes, row counts, causal runs starting at various
// positions (partial and several key tiles) and misaligned cache / output.
TEST_P(PathTest, AttentionTiledMatchesRef) {
  std::mt19937 rng(22);
  struct Case {
    int hd, n_q, first_pos;
  };
  const Case cases[] = {{128, 64, 0}, {128, 5, 37}, {128, 64, 150}, {64, 33, 63},
                        {16, 1, 0},   {80, 17, 64}, {128, 1, 300}};
  for (const Case& c : cases) {
    const int64_t stride = 2 * c.hd + 3;  // two KV heads, this one at column 1
    const int64_t n_keys = c.first_pos + c.n_q;
    std::vector<uint16_t> k, v;
    FillCache(rng, n_keys * stride + c.hd + 1, &k);
    FillCache(rng, n_keys * stride + c.hd + 1, &v);
    const int64_t q_stride = c.hd + 7, out_stride = c.hd + 5;
    const std::vector<float> q = RandomFloats(rng, c.n_q * q_stride, -3.0f, 3.0f);
    std::vector<int32_t> n_vis(c.n_q);
    for (int i = 0; i < c.n_q; ++i) n_vis[i] = c.first_pos + i + 1;
    const float scale = 1.0f / std::sqrt(static_cast<float>(c.hd));
    std::vector<float> scratch(AttentionTiledScratch(c.hd) + 1);
    Buffer got(c.n_q * out_stride * 4, 4);
    std::vector<float> want(c.n_q * out_stride);
    AttentionTiled(q.data(), q_stride, n_vis.data(), c.n_q, k.data() + c.hd + 1,
                   v.data() + c.hd + 1, stride, c.hd, scale, got.as<float>(), out_stride,
                   scratch.data() + 1);
    ref::AttentionTiled(q.data(), q_stride, n_vis.data(), c.n_q, k.data() + c.hd + 1,
                        v.data() + c.hd + 1, stride, c.hd, scale, want.data(), out_stride,
                        nullptr);
    for (int i = 0; i < c.n_q; ++i)
      for (int d = 0; d < c.hd; ++d)
        ASSERT_EQ(f32_to_bits(got.as<float>()[i * out_stride + d]),
                  f32_to_bits(want[i * out_stride + d]))
            << GetParam() << " hd " << c.hd << " n_q " << c.n_q << " pos " << c.first_pos
            << " row " << i << " dim " << d;
    // The twin itself against softmax attention in double (f32 scores, f32 value sums).
    for (int i = 0; i < c.n_q; i += std::max(1, c.n_q / 4)) {
      std::vector<double> sc(n_vis[i]);
      double mx = -INFINITY;
      for (int j = 0; j < n_vis[i]; ++j) {
        double dot = 0.0;
        for (int d = 0; d < c.hd; ++d)
          dot += static_cast<double>(fp16_to_f32(k[c.hd + 1 + j * stride + d])) * q[i * q_stride + d];
        sc[j] = dot * scale;
        mx = std::max(mx, sc[j]);
      }
      double den = 0.0;
      for (double& x : sc) den += (x = std::exp(x - mx));
      for (int d = 0; d < c.hd; ++d) {
        double o = 0.0;
        for (int j = 0; j < n_vis[i]; ++j) o += sc[j] * fp16_to_f32(v[c.hd + 1 + j * stride + d]);
        ASSERT_NEAR(want[i * out_stride + d], o / den, 1e-4) << "row " << i << " dim " << d;
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(AllPaths, PathTest, ::testing::ValuesIn(SupportedPaths()),
                         [](const ::testing::TestParamInfo<std::string>& i) { return i.param; });

}  // namespace
}  // namespace strata::kernels
