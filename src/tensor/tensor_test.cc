#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "tensor/dtype.h"
#include "tensor/quant.h"

namespace strata {
namespace {

TEST(DType, BlockLayouts) {
  EXPECT_EQ(Info(DType::Q8_0).block_size, 32);
  EXPECT_EQ(Info(DType::Q8_0).block_bytes, 34);
  EXPECT_EQ(Info(DType::Q4_K).block_bytes, 144);
  EXPECT_EQ(Info(DType::Q6_K).block_bytes, 210);
  EXPECT_EQ(RowBytes(DType::Q8_0, 64).value(), 68u);
  EXPECT_FALSE(RowBytes(DType::Q8_0, 33).ok());
  EXPECT_EQ(FindDType(4), nullptr);  // removed Q4_2
  EXPECT_EQ(FindDType(1000), nullptr);
  EXPECT_EQ(ParseDType("q8_0").value(), DType::Q8_0);
  EXPECT_FALSE(ParseDType("q9").ok());
}

TEST(Quant, Q8_0RoundTripError) {
  std::mt19937 rng(1);
  std::normal_distribution<float> nd(0, 1);
  std::vector<float> x(32 * 64), y(x.size());
  for (float& v : x) v = nd(rng);
  std::vector<uint8_t> q(RowBytes(DType::Q8_0, static_cast<int64_t>(x.size())).value());
  QuantizeRow(DType::Q8_0, x.data(), q.data(), static_cast<int64_t>(x.size()));
  DequantizeRow(DType::Q8_0, q.data(), y.data(), static_cast<int64_t>(x.size()));
  for (size_t b = 0; b < x.size() / 32; ++b) {
    float amax = 0;
    for (int j = 0; j < 32; ++j) amax = std::max(amax, std::fabs(x[b * 32 + j]));
    for (int j = 0; j < 32; ++j)  // half a step of amax/127, plus the fp16 rounding of the scale
      EXPECT_LE(std::fabs(x[b * 32 + j] - y[b * 32 + j]), amax / 127 * 0.5f + amax * 1e-3f);
  }
}

TEST(Quant, F16AndBf16RoundTrip) {
  std::vector<float> x = {0.f, 1.f, -2.5f, 65504.f, 1e-7f, 3.14159f};
  for (DType t : {DType::F16, DType::BF16, DType::F32}) {
    std::vector<uint8_t> q(RowBytes(t, 6).value());
    std::vector<float> y(6);
    QuantizeRow(t, x.data(), q.data(), 6);
    DequantizeRow(t, q.data(), y.data(), 6);
    for (int i = 0; i < 6; ++i)
      EXPECT_NEAR(y[i], x[i], std::fabs(x[i]) * 1e-2f + 1e-7f) << DTypeName(t);
  }
}

TEST(Quant, ZeroBlockHasZeroScale) {
  std::vector<float> x(32, 0.f), y(32, 1.f);
  BlockQ8_0 b;
  QuantizeRow(DType::Q8_0, x.data(), &b, 32);
  EXPECT_EQ(b.d, 0);
  DequantizeRow(DType::Q8_0, &b, y.data(), 32);
  for (float v : y) EXPECT_EQ(v, 0.f);
}

TEST(DType, LowBitBlockLayouts) {
  EXPECT_EQ(sizeof(BlockQ4_0), static_cast<size_t>(Info(DType::Q4_0).block_bytes));
  EXPECT_EQ(sizeof(BlockQ4_K), static_cast<size_t>(Info(DType::Q4_K).block_bytes));
  EXPECT_EQ(sizeof(BlockQ5_K), static_cast<size_t>(Info(DType::Q5_K).block_bytes));
  EXPECT_EQ(sizeof(BlockQ6_K), static_cast<size_t>(Info(DType::Q6_K).block_bytes));
  EXPECT_EQ(sizeof(BlockQ8_K), static_cast<size_t>(Info(DType::Q8_K).block_bytes));
  EXPECT_EQ(Info(DType::Q4_0).block_size, 32);
  for (DType t : {DType::Q4_K, DType::Q5_K, DType::Q6_K, DType::Q8_K}) {
    EXPECT_EQ(Info(t).block_size, 256) << DTypeName(t);
    EXPECT_FALSE(RowBytes(t, 128).ok()) << DTypeName(t);
    EXPECT_TRUE(CanQuantize(t) && CanDequantize(t)) << DTypeName(t);
  }
  EXPECT_EQ(RowBytes(DType::Q4_K, 512).value(), 288u);
  for (DType t : {DType::Q4_0, DType::Q4_K, DType::Q5_K, DType::Q6_K})
    EXPECT_TRUE(Info(t).compute) << DTypeName(t);
  EXPECT_FALSE(Info(DType::Q8_K).compute);  // activation format only
}

// llama.cpp's tests/test-quantize-fns.cpp measure sqrt(sum of squared errors) / n over
// 0.1 + 2 cos(i) (4096 values) and require < 0.002 for 4-, 5-, 6- and 8-bit types, and
// |dot(q(a), q8(b)) - dot(a, b)| / n < 0.02 for the dot products.
float RoundTripError(DType t, const std::vector<float>& x) {
  const int64_t n = static_cast<int64_t>(x.size());
  std::vector<uint8_t> q(RowBytes(t, n).value());
  std::vector<float> y(x.size());
  QuantizeRow(t, x.data(), q.data(), n);
  DequantizeRow(t, q.data(), y.data(), n);
  double sum = 0;
  for (size_t i = 0; i < x.size(); ++i) sum += (double(x[i]) - y[i]) * (double(x[i]) - y[i]);
  return static_cast<float>(std::sqrt(sum) / static_cast<double>(n));
}

std::vector<float> CosData(float offset, size_t n) {
  std::vector<float> x(n);
  for (size_t i = 0; i < n; ++i) x[i] = 0.1f + 2.0f * std::cos(static_cast<float>(i) + offset);
  return x;
}

std::vector<float> Dequantized(DType t, const std::vector<float>& x) {
  const int64_t n = static_cast<int64_t>(x.size());
  std::vector<uint8_t> q(RowBytes(t, n).value());
  std::vector<float> y(x.size());
  QuantizeRow(t, x.data(), q.data(), n);
  DequantizeRow(t, q.data(), y.data(), n);
  return y;
}

TEST(Quant, LowBitErrorWithinLlamaCppBounds) {
  const std::vector<float> a = CosData(0.0f, 4096), b = CosData(1.0f, 4096);
  double exact = 0;
  for (size_t i = 0; i < a.size(); ++i) exact += double(a[i]) * b[i];
  for (DType t : {DType::Q4_0, DType::Q4_K, DType::Q5_K, DType::Q6_K, DType::Q8_K}) {
    const float err = RoundTripError(t, a);
    EXPECT_LT(err, 0.002f) << DTypeName(t);
    // The dot product as the engine forms it: weights in t, activations in Q8_0 / Q8_K.
    const DType act = t == DType::Q4_0 ? DType::Q8_0 : DType::Q8_K;
    const std::vector<float> qa = Dequantized(t, a), qb = Dequantized(act, b);
    double dot = 0;
    for (size_t i = 0; i < a.size(); ++i) dot += double(qa[i]) * qb[i];
    EXPECT_LT(std::fabs(dot - exact) / 4096.0, 0.02) << DTypeName(t);
  }
  // Finer types must be more accurate on the same data.
  EXPECT_LT(RoundTripError(DType::Q5_K, a), RoundTripError(DType::Q4_K, a));
  EXPECT_LT(RoundTripError(DType::Q6_K, a), RoundTripError(DType::Q5_K, a));
}

TEST(Quant, LowBitRoundTripOnGaussianData) {
  std::mt19937 rng(7);
  std::normal_distribution<float> nd(0, 1);
  std::vector<float> x(256 * 16);
  for (float& v : x) v = nd(rng);
  // Relative RMS error per type (a 4-bit grid over roughly +-3 sigma is ~10% of sigma).
  const struct {
    DType t;
    float max_rel;
  } cases[] = {{DType::Q4_0, 0.15f},
               {DType::Q4_K, 0.12f},
               {DType::Q5_K, 0.06f},
               {DType::Q6_K, 0.03f},
               {DType::Q8_K, 0.01f}};
  for (const auto& c : cases) {
    const std::vector<float> y = Dequantized(c.t, x);
    double se = 0, ss = 0;
    for (size_t i = 0; i < x.size(); ++i) {
      se += (double(x[i]) - y[i]) * (double(x[i]) - y[i]);
      ss += double(x[i]) * x[i];
    }
    EXPECT_LT(std::sqrt(se / ss), c.max_rel) << DTypeName(c.t);
  }
}

TEST(Quant, Q8_KMatchesLlamaCppRules) {
  std::mt19937 rng(3);
  std::uniform_real_distribution<float> ud(-1, 1);
  std::vector<float> x(512);
  for (float& v : x) v = ud(rng);
  x[17] = 1.5f;    // largest magnitude in block 0, positive: maps to -127 (d negative)
  x[300] = -2.0f;  // largest in block 1, negative: also maps to -127 (d positive)
  BlockQ8_K b[2];
  QuantizeRow(DType::Q8_K, x.data(), b, 512);
  EXPECT_EQ(b[0].qs[17], -127);
  EXPECT_LT(b[0].d, 0.0f);
  EXPECT_EQ(b[1].qs[300 - 256], -127);
  EXPECT_GT(b[1].d, 0.0f);
  for (const BlockQ8_K& blk : b) {
    for (int j = 0; j < 16; ++j) {
      int sum = 0;
      for (int i = 0; i < 16; ++i) sum += blk.qs[16 * j + i];
      EXPECT_EQ(blk.bsums[j], sum);
    }
  }
  // q = round-half-even(x * -127 / max)
  const float iscale = -127.0f / 1.5f;
  for (int j = 0; j < 256; ++j)
    EXPECT_EQ(b[0].qs[j], static_cast<int>(std::nearbyintf(iscale * x[j]))) << j;
}

TEST(Quant, LowBitZeroBlocks) {
  std::vector<float> x(256, 0.f), y(256, 1.f);
  std::vector<uint8_t> q(292);
  for (DType t : {DType::Q4_0, DType::Q4_K, DType::Q5_K, DType::Q6_K, DType::Q8_K}) {
    std::fill(y.begin(), y.end(), 1.f);
    QuantizeRow(t, x.data(), q.data(), 256);
    DequantizeRow(t, q.data(), y.data(), 256);
    for (float v : y) EXPECT_EQ(v, 0.f) << DTypeName(t);
  }
}

TEST(Quant, Q4_0Layout) {
  // Block of 32 with the largest magnitude -8 (d = 1): element j in the low nibble of qs[j],
  // element j + 16 in the high nibble, stored as q + 8.
  std::vector<float> x(32);
  for (int j = 0; j < 32; ++j) x[j] = static_cast<float>((j % 15) - 7);
  x[5] = -8.0f;
  BlockQ4_0 b;
  QuantizeRow(DType::Q4_0, x.data(), &b, 32);
  EXPECT_EQ(b.d, 0x3c00);  // fp16 1.0
  for (int j = 0; j < 16; ++j) {
    EXPECT_EQ(b.qs[j] & 0xF, static_cast<int>(x[j]) + 8) << j;
    EXPECT_EQ(b.qs[j] >> 4, static_cast<int>(x[j + 16]) + 8) << j;
  }
}

// The quantizers write the same bytes as llama.cpp's (ggml_quantize_chunk without an importance
// matrix, i.e. quantize_row_*_ref). The expected FNV-1a hashes were computed by calling
// libggml-base (node-llama-cpp's build) on exactly this data, which is generated with integer
// arithmetic only (exact in float): small values, outliers every 37th element, all-zero
// super-blocks and sub-blocks without negative values.
TEST(Quant, BytesMatchLlamaCppReferenceQuantizers) {
  const int64_t n = 256 * 32;
  std::vector<float> x(static_cast<size_t>(n));
  uint32_t s = 12345;
  for (int64_t i = 0; i < n; ++i) {
    s = s * 1664525u + 1013904223u;
    float v = static_cast<float>(static_cast<int32_t>(s >> 8) - (1 << 23)) * 0x1p-27f;
    if (i % 37 == 0) v *= 16.0f;
    if ((i / 256) % 11 == 5) v = 0.0f;
    if ((i / 32) % 13 == 7) v = std::fabs(v);
    x[static_cast<size_t>(i)] = v;
  }
  auto fnv1a = [](const std::vector<uint8_t>& b) {
    uint64_t h = 0xcbf29ce484222325ull;
    for (uint8_t c : b) h = (h ^ c) * 0x100000001b3ull;
    return h;
  };
  const std::pair<DType, uint64_t> want[] = {
      {DType::Q4_0, 0x48b61dd56f9b5e1full}, {DType::Q8_0, 0x8824ffaf38956578ull},
      {DType::Q4_K, 0xf5d9a36eb063493eull}, {DType::Q5_K, 0x1b2143676b100458ull},
      {DType::Q6_K, 0x16aa39b8e1a815a0ull},
  };
  for (const auto& [t, hash] : want) {
    std::vector<uint8_t> q(RowBytes(t, n).value());
    QuantizeRow(t, x.data(), q.data(), n);
    EXPECT_EQ(fnv1a(q), hash) << DTypeName(t);
  }
}

}  // namespace
}  // namespace strata
