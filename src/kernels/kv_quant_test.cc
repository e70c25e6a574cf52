// Quantized KV cache kernels (kv_quant.cc, kernels_kvq_avx2.cc):
//  1. QuantizeKvRow: F16 rows equal the F16 cache's rounding; Q8_0 / Q4_0 rows dequantize to
//     within about half a step of the input (Q4_0: a step where it clamps; it follows
//     llama.cpp's reference quantizer).
//  2. The scalar twin of AttentionKv against double-precision softmax attention over the
//     dequantized cache (relative 1e-5: float sums and the softmax's exp).
//  3. Every path this CPU supports against the scalar twin, over sizes, head counts, KV type
//     pairs and misaligned rows. The value sums are bit-identical across paths (one fma per
//     element, same order); the scores use each path's dot product and softmax, whose orders
//     may differ (as MatMul's and Softmax's), so outputs agree within relative 2e-5.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "base/fp16.h"
#include "kernels/kernels.h"
#include "kernels/kernels_impl.h"
#include "kernels/kv_test_util.h"

namespace strata::kernels {
namespace {

using kvtest::RandomNormal;

// Dequantizes one row of type t (n elements).
std::vector<double> Dequant(DType t, const uint8_t* row, int64_t n) {
  std::vector<double> out(static_cast<size_t>(n), 0.0);
  std::vector<float> acc(static_cast<size_t>(n), 0.0f);
  internal::AccumulateKvRow(t, row, 1.0f, acc.data(), n);  // 0 + 1 * x is exact
  for (int64_t i = 0; i < n; ++i) out[static_cast<size_t>(i)] = acc[static_cast<size_t>(i)];
  return out;
}

TEST(KvQuant, RowsRoundTrip) {
  const int64_t n = 256;
  const std::vector<float> x = RandomNormal(n, 1, 3.0f);
  for (DType t : {DType::F16, DType::Q8_0, DType::Q4_0}) {
    // Misaligned on purpose, by 2: a block's fp16 scale makes 2 bytes its alignment.
    std::vector<uint8_t> row(RowBytesUnchecked(t, n) + 2);
    ref::QuantizeKvRow(t, x.data(), row.data() + 2, n);
    const std::vector<double> y = Dequant(t, row.data() + 2, n);
    for (int64_t b = 0; b < n / 32; ++b) {
      double amax = 0;
      for (int i = 0; i < 32; ++i) amax = std::max(amax, std::fabs(double{x[b * 32 + i]}));
      const double step = t == DType::Q8_0 ? amax / 127 : t == DType::Q4_0 ? amax / 8 : 0;
      // Half a step plus the f16 rounding of the scale (Q8_0: 127 steps of relative 2^-11);
      // Q4_0 clamps +8 steps to +7, a whole step, for the side opposite the largest element.
      const double bound = t == DType::Q8_0 ? 0.6 : 1.01;
      for (int i = 0; i < 32; ++i) {
        const size_t k = static_cast<size_t>(b * 32 + i);
        if (t == DType::F16) EXPECT_EQ(y[k], fp16_to_f32(f32_to_fp16(x[k])));
        else EXPECT_LE(std::fabs(y[k] - x[k]), bound * step + 1e-6) << DTypeName(t) << " " << k;
      }
    }
    // The dispatched quantizer writes the same bytes.
    std::vector<uint8_t> row2(row.size());
    QuantizeKvRow(t, x.data(), row2.data() + 2, n);
    EXPECT_EQ(0, std::memcmp(row.data() + 2, row2.data() + 2, row.size() - 2)) << DTypeName(t);
  }
  // Q4_0: the element of largest magnitude maps to -8 exactly (llama.cpp's reference).
  float blk[32] = {};
  blk[3] = -2.0f;
  blk[7] = 1.0f;
  BlockQ4_0 q;
  ref::QuantizeKvRow(DType::Q4_0, blk, &q, 32);
  EXPECT_EQ(fp16_to_f32(q.d), 0.25f);
  EXPECT_EQ(q.qs[3] & 15, 0);   // -2 / 0.25 + 8 = 0
  EXPECT_EQ(q.qs[7] & 15, 12);  // 1 / 0.25 + 8 = 12
}

// A quantized cache of n_kv positions for one KV head, rows `pad` bytes apart beyond the row
// and starting `offset` bytes into the buffer.
struct Cache {
  DType kt, vt;
  int64_t hd, n_kv;
  size_t k_row, v_row;
  std::vector<uint8_t> k, v;
  Cache(DType kt_, DType vt_, int64_t hd_, int64_t n_kv_, size_t pad, size_t offset, uint32_t seed)
      : kt(kt_), vt(vt_), hd(hd_), n_kv(n_kv_) {
    k_row = RowBytesUnchecked(kt, hd) + pad;
    v_row = RowBytesUnchecked(vt, hd) + pad;
    k.assign(offset + k_row * n_kv, 0);
    v.assign(offset + v_row * n_kv, 0);
    for (int64_t j = 0; j < n_kv; ++j) {
      const std::vector<float> kx = RandomNormal(hd, seed + 2 * j, 1.0f);
      const std::vector<float> vx = RandomNormal(hd, seed + 2 * j + 1, 1.0f);
      ref::QuantizeKvRow(kt, kx.data(), k.data() + offset + j * k_row, hd);
      ref::QuantizeKvRow(vt, vx.data(), v.data() + offset + j * v_row, hd);
    }
    k_at = k.data() + offset;
    v_at = v.data() + offset;
  }
  KvAttention Args(int n_heads, float scale) const {
    return {.k = k_at,
            .k_type = kt,
            .k_row_bytes = k_row,
            .v = v_at,
            .v_type = vt,
            .v_row_bytes = v_row,
            .n_kv = n_kv,
            .n_heads = n_heads,
            .head_dim = static_cast<int>(hd),
            .scale = scale};
  }
  const uint8_t* k_at;
  const uint8_t* v_at;
};

const std::vector<std::pair<DType, DType>>& KvTypePairs() {
  static const std::vector<std::pair<DType, DType>> p = {
      {DType::Q8_0, DType::Q8_0}, {DType::Q4_0, DType::Q4_0}, {DType::Q8_0, DType::F16},
      {DType::F16, DType::Q8_0},  {DType::Q4_0, DType::Q8_0}, {DType::F16, DType::F16}};
  return p;
}

TEST(KvQuant, ScalarTwinMatchesDoublePrecision) {
  const int hd = 64, n_heads = 2;
  for (const auto& [kt, vt] : KvTypePairs()) {
    for (int64_t n_kv : {1, 5, 70}) {
      Cache c(kt, vt, hd, n_kv, 0, 0, 100);
      const std::vector<float> q = RandomNormal(static_cast<size_t>(hd) * n_heads, 7);
      std::vector<float> out(q.size()), scratch(static_cast<size_t>(n_kv * n_heads));
      const float scale = 0.125f;
      ref::AttentionKv(c.Args(n_heads, scale), q.data(), out.data(), scratch.data());
      for (int h = 0; h < n_heads; ++h) {
        // The query as the scores see it: in the key type's activation format.
        std::vector<float> qh(q.begin() + h * hd, q.begin() + (h + 1) * hd);
        const internal::TypeKernels* tk = internal::FindType(internal::ScalarKernels(), kt);
        std::vector<uint8_t> qx(4 * hd);
        std::vector<double> qd(qh.begin(), qh.end());
        if (tk->quantize != nullptr) {
          tk->quantize(qh.data(), qx.data(), hd);
          qd = Dequant(tk->vec_dot_type == DType::F16 ? DType::F16 : DType::Q8_0, qx.data(), hd);
        }
        std::vector<double> s(static_cast<size_t>(n_kv));
        double m = -INFINITY, sum = 0;
        for (int64_t j = 0; j < n_kv; ++j) {
          const std::vector<double> kj = Dequant(kt, c.k_at + j * c.k_row, hd);
          double d = 0;
          for (int i = 0; i < hd; ++i) d += kj[static_cast<size_t>(i)] * qd[static_cast<size_t>(i)];
          s[static_cast<size_t>(j)] = d * scale;
          m = std::max(m, s[static_cast<size_t>(j)]);
        }
        std::vector<double> o(hd, 0.0);
        for (int64_t j = 0; j < n_kv; ++j) {
          const double w = std::exp(s[static_cast<size_t>(j)] - m);
          sum += w;
          const std::vector<double> vj = Dequant(vt, c.v_at + j * c.v_row, hd);
          for (int i = 0; i < hd; ++i) o[static_cast<size_t>(i)] += w * vj[static_cast<size_t>(i)];
        }
        for (int i = 0; i < hd; ++i) {
          const double want = o[static_cast<size_t>(i)] / sum;
          EXPECT_NEAR(out[static_cast<size_t>(h * hd + i)], want, 1e-5 * (1 + std::fabs(want)))
              << DTypeName(kt) << "/" << DTypeName(vt) << " n_kv " << n_kv << " h " << h;
        }
      }
    }
  }
}

class KvPathTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override { ASSERT_TRUE(SetPathForTesting(GetParam().c_str())); }
  void TearDown() override { SetPathForTesting(SupportedPaths().front().c_str()); }
};

TEST_P(KvPathTest, AttentionMatchesScalarTwin) {
  for (const auto& [kt, vt] : KvTypePairs()) {
    for (int hd : {32, 64, 128}) {
      for (int64_t n_kv : {1, 2, 31, 33, 300}) {
        for (size_t offset : {size_t{0}, size_t{2}, size_t{6}}) {  // blocks are 2-aligned
          const int n_heads = hd == 64 ? 3 : 1;
          Cache c(kt, vt, hd, n_kv, offset * 2, offset, static_cast<uint32_t>(n_kv * 7 + hd));
          const std::vector<float> q = RandomNormal(static_cast<size_t>(hd) * n_heads, 9);
          std::vector<float> want(q.size()), got(q.size());
          std::vector<float> scratch(static_cast<size_t>(n_kv * n_heads));
          const KvAttention a = c.Args(n_heads, 1.0f / std::sqrt(static_cast<float>(hd)));
          ref::AttentionKv(a, q.data(), want.data(), scratch.data());
          AttentionKv(a, q.data(), got.data(), scratch.data());
          for (size_t i = 0; i < q.size(); ++i)
            ASSERT_NEAR(got[i], want[i], 2e-5 * (1 + std::fabs(want[i])))
                << GetParam() << " " << DTypeName(kt) << "/" << DTypeName(vt) << " hd " << hd
                << " n_kv " << n_kv << " offset " << offset << " i " << i;
        }
      }
    }
  }
}

TEST_P(KvPathTest, ValueSumsAreBitIdentical) {
  for (DType t : {DType::F32, DType::F16, DType::Q8_0, DType::Q4_0}) {
    for (int64_t n : {32, 96, 128}) {
      const std::vector<float> x = RandomNormal(static_cast<size_t>(n), 3);
      // Block and f16 rows misaligned on purpose; f32 rows (the converted value rows) aligned.
      std::vector<float> storage(static_cast<size_t>(n) + 16);
      uint8_t* base = reinterpret_cast<uint8_t*>(storage.data());
      uint8_t* row = t == DType::F32 ? base : base + 1;
      if (t == DType::F32) std::memcpy(row, x.data(), x.size() * sizeof(float));
      else ref::QuantizeKvRow(t, x.data(), row, n);
      std::vector<float> a = RandomNormal(static_cast<size_t>(n), 4), b = a;
      internal::AccumulateKvRow(t, row, 0.37f, a.data(), n);
      if (GetParam() == "avx2" || GetParam() == "avx512")
        internal::AccumulateKvRowAvx2(t, row, 0.37f, b.data(), n);
      else internal::AccumulateKvRow(t, row, 0.37f, b.data(), n);
      EXPECT_EQ(0, std::memcmp(a.data(), b.data(), a.size() * sizeof(float))) << DTypeName(t);
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Paths, KvPathTest, ::testing::ValuesIn(SupportedPaths()),
                         [](const auto& info) { return info.param; });

}  // namespace
}  // namespace strata::kernels
