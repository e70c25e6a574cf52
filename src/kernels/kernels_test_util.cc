// Helpers shared by the kernel tests (see kernels_test_util.h).
#include "kernels/kernels_test_util.h"

#include <gtest/gtest.h>

#include <cfloat>
#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "base/fp16.h"
#include "tensor/quant.h"

namespace strata::kernels::test_util {

std::vector<float> RandomFloats(std::mt19937& rng, int64_t n, float lo, float hi) {
  std::uniform_real_distribution<float> dist(lo, hi);
  std::vector<float> v(static_cast<size_t>(n));
  for (float& f : v) f = dist(rng);
  return v;
}

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
        const int q =
            ((k < 2 ? lo & 0xF : lo >> 4) | (((b.qh[32 * h + l] >> (2 * k)) & 3) << 4)) - 32;
        const int sc = b.scales[e / 16];
        put(i, double(fp16_to_f32(b.d)) * sc * q, 0.0);
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

std::vector<size_t> OffsetsFor(DType t) {
  if (t == DType::F32 || t == DType::Q8_K) return {0, 4, 8, 12};  // Q8_K: f32 scale
  return {0, 2, 6, 34};
}

void MakeWeightRow(std::mt19937& rng, DType t, int64_t n, void* dst) {
  const std::vector<float> f = RandomFloats(rng, n, -1.0f, 1.0f);
  if (VecDotType(t) == t) {
    ref::QuantizeActivationRow(t, f.data(), dst, n);
  } else {
    QuantizeRow(t, f.data(), dst, n);  // the 4/5/6-bit types: the weight quantizer
  }
}

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
      for (int c = 0; c < hd; ++c)
        d += q[h * hd + c] * static_cast<double>(fp16_to_f32(k[j * stride + kvh * hd + c]));
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

void MakeDotInputs(std::mt19937& rng, DType t, int64_t n, void* w, void* x) {
  MakeWeightRow(rng, t, n, w);
  const std::vector<float> xf = RandomFloats(rng, n, -2.0f, 2.0f);
  ref::QuantizeActivationRow(t, xf.data(), x, n);
}

void FillCache(std::mt19937& rng, int64_t n, std::vector<uint16_t>* c) {
  const std::vector<float> f = RandomFloats(rng, n, -1.0f, 1.0f);
  c->resize(n);
  for (int64_t i = 0; i < n; ++i) (*c)[i] = f32_to_fp16(f[i]);
}

AttnInputs RandomAttnInputs(std::mt19937& rng, const AttnCase& c, int64_t pad, float q_max,
                            int64_t extra) {
  AttnInputs in;
  in.stride = static_cast<int64_t>(c.n_kv_heads) * c.hd + pad;
  in.q = RandomFloats(rng, c.n_heads * c.hd, -q_max, q_max);
  FillCache(rng, c.n_kv * in.stride + extra, &in.k);
  FillCache(rng, c.n_kv * in.stride + extra, &in.v);
  in.scale = 1.0f / std::sqrt(static_cast<float>(c.hd));
  return in;
}

std::vector<float> RefAttention(const AttnCase& c, const AttnInputs& in, int64_t offset) {
  std::vector<float> out(static_cast<size_t>(c.n_heads * c.hd)), scratch(c.n_kv);
  ref::Attention(in.q.data(), in.k.data() + offset, in.v.data() + offset, c.n_kv, in.stride,
                 c.n_heads, c.n_kv_heads, c.hd, in.scale, out.data(), scratch.data());
  return out;
}

const internal::IsaKernels& TableOf(const std::string& path) {
#if defined(__x86_64__)
  if (path == "avx512") return internal::Avx512Kernels();
  if (path == "avx2") return internal::Avx2Kernels();
#elif defined(__aarch64__)
  if (path == "neon") return internal::NeonKernels();
#endif
  return internal::ScalarKernels();
}

INSTANTIATE_TEST_SUITE_P(AllPaths, PathTest, ::testing::ValuesIn(SupportedPaths()),
                         [](const ::testing::TestParamInfo<std::string>& i) { return i.param; });

}  // namespace strata::kernels::test_util
