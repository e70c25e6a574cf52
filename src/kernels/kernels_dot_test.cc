// Kernel tests, part 2: every dispatched path against the twins for activation
// quantization, dot products and MatMul, over sizes and misalignments.
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
          x[i] = kd == 0   ? u(rng) * 1e-6f
                 : kd == 1 ? u(rng) * 1e5f
                 : kd == 2 ? std::round(u(rng) * 100.0f) + 0.5f
                           : u(rng) * 3.0f;
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
      MakeDotInputs(rng, t, n, w.data(), x.data());
      double exact, abs_sum;
      DoubleDot(t, n, w.data(), x.data(), &exact, &abs_sum);
      const float want = ref::VecDot(t, n, w.data(), x.data());
      const float got = VecDot(t, n, w.data(), x.data());
      ASSERT_NEAR(got, want, 2 * DotTolerance(n, abs_sum)) << DTypeName(t) << " n=" << n;
      // Every path follows llama.cpp's accumulation order (the scalar twin's), so the results
      // are not just close but identical.
      ASSERT_EQ(f32_to_bits(got), f32_to_bits(want))
          << DTypeName(t) << " n=" << n << " " << got << " vs " << want;
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
                            " cols=" + std::to_string(s.cols) + " n_tok=" + std::to_string(n_tok) +
                            " threads=" + std::to_string(pool ? pool->size() : 0);
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
      {DType::Q8_0, 1, 32},
      {DType::Q8_0, 67, 96},
      {DType::Q8_0, 13, 320},
      {DType::F32, 7, 13},
      {DType::F32, 31, 64},
      {DType::F16, 5, 33},
      {DType::F16, 29, 130},
      {DType::BF16, 11, 17},
      {DType::BF16, 23, 96},
      // GEMM-order shapes (rows a multiple of 4, row length of the GEMM step).
      {DType::Q8_0, 64, 96},
      {DType::F32, 32, 64},
      {DType::F16, 28, 144},
      {DType::BF16, 24, 96},
      {DType::F32, 8, 200},
      // 4/5/6-bit types: plain vec_dot order (rows % 8 != 0; for Q4_0 also tinyBLAS's, which
      // is the same), and llama.cpp's repacked orders (Q4_0 / Q4_K with rows % 8 == 0: GEMM
      // for groups of 4 tokens, GEMV for the rest).
      {DType::Q4_0, 13, 96},
      {DType::Q4_0, 36, 64},
      {DType::Q4_0, 64, 96},
      {DType::Q4_K, 13, 256},
      {DType::Q4_K, 20, 512},
      {DType::Q4_K, 16, 512},
      {DType::Q5_K, 8, 256},
      {DType::Q5_K, 11, 512},
      {DType::Q6_K, 12, 512},
      {DType::Q6_K, 5, 256},
  };
  std::vector<uint8_t> scratch;  // shared across calls: reused and grown
  for (const MatMulShape& s : shapes)
    for (int64_t n_tok : {1, 2, 3, 7, 16, 33})
      for (ThreadPool* pool : pools) CheckMatMul(s, n_tok, pool, rng, &scratch);
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

}  // namespace
}  // namespace strata::kernels
