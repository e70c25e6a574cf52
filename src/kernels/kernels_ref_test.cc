// Kernel tests, part 1: the scalar twins (namespace ref) against double-precision math,
// and the dispatcher.
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

// ---- 1. reference kernels vs double-precision math ------------------------------------------

TEST(RefKernels, VecDotMatchesDoubleDot) {
  std::mt19937 rng(1);
  for (DType t : kTypes) {
    for (int64_t n : SizesFor(t)) {
      const size_t bytes = RowBytesUnchecked(t, n);
      std::vector<uint8_t> w(bytes), x(ActBytes(t, n));
      MakeDotInputs(rng, t, n, w.data(), x.data());
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
  x[0] = 127.0f;
  x[1] = 0.5f;
  x[2] = 1.5f;
  x[3] = 2.5f;
  x[4] = -3.5f;
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
  for (const int8_t v : q[1].qs) EXPECT_EQ(v, 0);
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
    for (int64_t i = 0; i < n; ++i)
      EXPECT_NEAR(y[i], x[i] * scale * w[i], 1e-6 * std::fabs(x[i] * scale * w[i]) + 1e-7);
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

TEST(RefKernels, AttentionMatchesNaiveDouble) {
  std::mt19937 rng(7);
  for (const AttnCase& c : kAttnCases) {
    const AttnInputs in = RandomAttnInputs(rng, c, 3, 2.0f, 0);
    const std::vector<float> out = RefAttention(c, in);
    std::vector<double> want;
    NaiveAttention(in.q, in.k, in.v, c.n_kv, in.stride, c.n_heads, c.n_kv_heads, c.hd, in.scale,
                   &want);
    // The f16 rounding of q and of the running value sum (llama.cpp's numerics) costs up to
    // about 2^-11 per step, growing like a random walk over the keys.
    const double tol = 1e-3 * (1.0 + std::sqrt(static_cast<double>(c.n_kv)));
    for (size_t i = 0; i < out.size(); ++i) EXPECT_NEAR(out[i], want[i], tol) << i;
  }
}

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
      MakeDotInputs(rng, c.t, n, w.data(), x.data());
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

}  // namespace
}  // namespace strata::kernels
