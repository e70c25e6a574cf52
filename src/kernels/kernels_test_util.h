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
//
// The tests are split by kernel family: kernels_ref_test.cc (twins vs double math, dispatch),
// kernels_dot_test.cc (activation quantization, dots, MatMul), kernels_tile_test.cc (low-bit
// and prepared GEMM tiles), kernels_ops_test.cc (norm, softmax, SiLU, add, RoPE, attention).
// This header holds what they share.
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "kernels/kernels.h"
#include "kernels/kernels_impl.h"

namespace strata::kernels::test_util {

inline constexpr double kDotTol = 8.0;

// A byte buffer whose payload starts `offset` bytes after a 64-byte boundary.
class Buffer {
 public:
  Buffer(size_t bytes, size_t offset) : storage_(bytes + offset + 128) {
    const size_t mis = reinterpret_cast<uintptr_t>(storage_.data()) % 64;
    data_ = storage_.data() + (mis == 0 ? 0 : 64 - mis) + offset;
  }
  template <typename T>
  T* as() {
    return reinterpret_cast<T*>(data_);
  }
  uint8_t* data() { return data_; }

 private:
  std::vector<uint8_t> storage_;
  uint8_t* data_;
};

std::vector<float> RandomFloats(std::mt19937& rng, int64_t n, float lo, float hi);

// Dequantized value i of a row stored in `t` (F32/F16/BF16/Q8_0).
double ValueAt(DType t, const void* row, int64_t i);

// The values of a row stored in `t`, decoded in double (exact), and per element the sum of
// the magnitudes of the terms that make it up (|d sc q| + |dmin m| for Q4_K / Q5_K, else the
// value's magnitude): rounding errors of a kernel scale with those, not with the value.
void DecodeRow(DType t, const void* row, int64_t n, std::vector<double>* v,
               std::vector<double>* mag);

// sum |w_i x_i| and the exact (double) dot of a weight row in `t` and an activation row in
// VecDotType(t).
void DoubleDot(DType t, int64_t n, const void* w, const void* x, double* dot, double* abs_sum);

double DotTolerance(int64_t n, double abs_sum);

inline constexpr DType kTypes[] = {DType::F32,  DType::F16,  DType::BF16, DType::Q8_0,
                                   DType::Q4_0, DType::Q4_K, DType::Q5_K, DType::Q6_K};

inline int64_t BlockOf(DType t) { return Info(t).block_size; }

// Bytes of an activation row of n elements for weights of type t.
inline size_t ActBytes(DType t, int64_t n) { return RowBytesUnchecked(VecDotType(t), n); }

// Sizes to test for a type: 1..300 and some large ones (multiples of the block size for the
// quantized types).
std::vector<int64_t> SizesFor(DType t);

// Misalignment offsets in bytes that keep each element type naturally aligned (scalar code
// reads floats / fp16 scales directly; an unaligned access would be UB). Q8_0 rows start at
// any even byte offset in a GGUF file, so odd multiples of 2 are tested for them.
std::vector<size_t> OffsetsFor(DType t);

// Random weight row of type t: quantized from floats by the reference quantizer.
void MakeWeightRow(std::mt19937& rng, DType t, int64_t n, void* dst);
// Random inputs of a dot product of type t: a weight row (MakeWeightRow) into w and an
// activation row of floats in [-2, 2], quantized by the reference, into x.
void MakeDotInputs(std::mt19937& rng, DType t, int64_t n, void* w, void* x);

// Attention computed directly in double from the f16 cache.
void NaiveAttention(const std::vector<float>& q, const std::vector<uint16_t>& k,
                    const std::vector<uint16_t>& v, int64_t n_kv, int64_t stride, int n_heads,
                    int n_kv_heads, int hd, float scale, std::vector<double>* out);

struct AttnCase {
  int n_heads, n_kv_heads, hd;
  int64_t n_kv;
};

inline constexpr AttnCase
    kAttnCases
        [] =
            {
                {1, 1, 1, 1},      {2, 1, 5, 3},    {4, 2, 16, 17}, {6, 2, 64, 40},
                {12, 2, 128, 9},   {3, 3, 80, 300}, {4, 4, 33, 2},  {14, 2, 64, 129},
                {12, 2, 128, 200},  // several key chunks of the fixed-size AVX-512 path
};

void FillCache(std::mt19937& rng, int64_t n, std::vector<uint16_t>* c);

// Random inputs of an attention case: q in [-q_max, q_max]; fp16 K and V caches of n_kv rows
// of stride = n_kv_heads * hd + pad elements, plus `extra`, in [-1, 1]; the scale 1 / sqrt(hd).
struct AttnInputs {
  std::vector<float> q;
  std::vector<uint16_t> k, v;
  int64_t stride;
  float scale;
};
AttnInputs RandomAttnInputs(std::mt19937& rng, const AttnCase& c, int64_t pad, float q_max,
                            int64_t extra);
// ref::Attention of the case on `in`, its caches read from element `offset` on.
std::vector<float> RefAttention(const AttnCase& c, const AttnInputs& in, int64_t offset = 0);

// The ISA table behind a path name.
const internal::IsaKernels& TableOf(const std::string& path);

// Every dispatched path this CPU supports ("scalar" included), one instance per path
// (instantiated in kernels_test_util.cc).
class PathTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override { ASSERT_TRUE(SetPathForTesting(GetParam().c_str())); }
  void TearDown() override { SetPathForTesting(SupportedPaths().front().c_str()); }
};

}  // namespace strata::kernels::test_util
