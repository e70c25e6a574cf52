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
    for (int i = 0; i < 6; ++i) EXPECT_NEAR(y[i], x[i], std::fabs(x[i]) * 1e-2f + 1e-7f) << DTypeName(t);
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

}  // namespace
}  // namespace strata
