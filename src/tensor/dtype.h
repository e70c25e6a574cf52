// Tensor element types with ggml's numeric ids (as stored in GGUF), and block layouts.
#pragma once

#include <cstdint>
#include <string>

#include "base/status.h"

namespace strata {

enum class DType : uint32_t {
  F32 = 0, F16 = 1, Q4_0 = 2, Q4_1 = 3, Q5_0 = 6, Q5_1 = 7, Q8_0 = 8, Q8_1 = 9,
  Q2_K = 10, Q3_K = 11, Q4_K = 12, Q5_K = 13, Q6_K = 14, Q8_K = 15,
  IQ2_XXS = 16, IQ2_XS = 17, IQ3_XXS = 18, IQ1_S = 19, IQ4_NL = 20, IQ3_S = 21, IQ2_S = 22,
  IQ4_XS = 23, I8 = 24, I16 = 25, I32 = 26, I64 = 27, F64 = 28, IQ1_M = 29, BF16 = 30,
  TQ1_0 = 34, TQ2_0 = 35, MXFP4 = 39,
};

struct DTypeInfo {
  const char* name;
  int64_t block_size;   // elements per block
  int64_t block_bytes;  // bytes per block
  bool compute;         // Strata can run matmuls with weights of this type
};

// Null when `id` is not a ggml type id we know.
const DTypeInfo* FindDType(uint32_t id);
const DTypeInfo& Info(DType t);
inline const char* DTypeName(DType t) { return Info(t).name; }
Result<DType> ParseDType(const std::string& name);  // "f32", "Q8_0", "bf16", ... (case-insensitive)

// Bytes of a row of n elements; error when n is not a multiple of the block size or overflows.
Result<uint64_t> RowBytes(DType t, int64_t n);
// Unchecked version for hot paths (n known valid).
inline uint64_t RowBytesUnchecked(DType t, int64_t n) {
  const DTypeInfo& i = Info(t);
  return static_cast<uint64_t>(n / i.block_size) * static_cast<uint64_t>(i.block_bytes);
}

// Q8_0: 32 weights, one fp16 scale.  x = d * qs[i]
struct BlockQ8_0 {
  uint16_t d;  // fp16
  int8_t qs[32];
};
static_assert(sizeof(BlockQ8_0) == 34, "Q8_0 block layout");

}  // namespace strata
