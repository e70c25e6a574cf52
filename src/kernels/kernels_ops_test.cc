// Kernel tests, part 4: element-wise kernels (RmsNorm, Softmax, SiluMul, Add, Rope) and
// attention of every path against the twins.
// Tolerances and the helpers: kernels_test_util.h.
#include "kernels/kernels.h"

#include <gtest/gtest.h>

#include <cfloat>
#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "base/fp16.h"
#include "kernels/kernels_impl.h"
#include "kernels/kernels_test_util.h"
#include "tensor/quant.h"

namespace strata::kernels {
namespace {

using namespace test_util;  // NOLINT(google-build-using-namespace)

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
    std::vector<float> g =
        RandomFloats(rng, n, n % 5 == 0 ? -100.0f : -15.0f, n % 5 == 0 ? 100.0f : 15.0f);
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
    const AttnInputs in = RandomAttnInputs(rng, c, 5, 3.0f, 1);
    const std::vector<float> want = RefAttention(c, in);
    // Misaligned cache (odd fp16 element offset) and output.
    Buffer out(c.n_heads * c.hd * 4, 4);
    std::vector<float> scratch(c.n_kv, NAN);
    Attention(in.q.data(), in.k.data() + 1, in.v.data() + 1, c.n_kv, in.stride, c.n_heads,
              c.n_kv_heads, c.hd, in.scale, out.as<float>(), scratch.data());
    const std::vector<float> want_off = RefAttention(c, in, 1);
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
                        v.data() + c.hd + 1, stride, c.hd, scale, want.data(), out_stride, nullptr);
    for (int i = 0; i < c.n_q; ++i)
      for (int d = 0; d < c.hd; ++d)
        ASSERT_EQ(f32_to_bits(got.as<float>()[i * out_stride + d]),
                  f32_to_bits(want[i * out_stride + d]))
            << GetParam() << " hd " << c.hd << " n_q " << c.n_q << " pos " << c.first_pos << " row "
            << i << " dim " << d;
    // The twin itself against softmax attention in double (f32 scores, f32 value sums).
    for (int i = 0; i < c.n_q; i += std::max(1, c.n_q / 4)) {
      std::vector<double> sc(n_vis[i]);
      double mx = -INFINITY;
      for (int j = 0; j < n_vis[i]; ++j) {
        double dot = 0.0;
        for (int d = 0; d < c.hd; ++d)
          dot +=
              static_cast<double>(fp16_to_f32(k[c.hd + 1 + j * stride + d])) * q[i * q_stride + d];
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

}  // namespace
}  // namespace strata::kernels
