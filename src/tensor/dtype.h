// Tensor element types with ggml's numeric ids (as stored in GGUF), and block layouts.
#pragma once

#include <cstdint>
#include <string>

#include "base/status.h"

namespace strata {

// ggml's tensor types, one row each: enumerator (also the name), numeric id, elements and bytes
// per block (as in ggml's type traits), and whether Strata can run matmuls with weights of the
// type. DType and the DTypeInfo table are both made from this list.
#define STRATA_DTYPES(X)         \
  X(F32, 0, 1, 4, true)          \
  X(F16, 1, 1, 2, true)          \
  X(Q4_0, 2, 32, 18, true)       \
  X(Q4_1, 3, 32, 20, false)      \
  X(Q5_0, 6, 32, 22, false)      \
  X(Q5_1, 7, 32, 24, false)      \
  X(Q8_0, 8, 32, 34, true)       \
  X(Q8_1, 9, 32, 36, false)      \
  X(Q2_K, 10, 256, 84, false)    \
  X(Q3_K, 11, 256, 110, false)   \
  X(Q4_K, 12, 256, 144, true)    \
  X(Q5_K, 13, 256, 176, true)    \
  X(Q6_K, 14, 256, 210, true)    \
  X(Q8_K, 15, 256, 292, false)   \
  X(IQ2_XXS, 16, 256, 66, false) \
  X(IQ2_XS, 17, 256, 74, false)  \
  X(IQ3_XXS, 18, 256, 98, false) \
  X(IQ1_S, 19, 256, 50, false)   \
  X(IQ4_NL, 20, 32, 18, false)   \
  X(IQ3_S, 21, 256, 110, false)  \
  X(IQ2_S, 22, 256, 82, false)   \
  X(IQ4_XS, 23, 256, 136, false) \
  X(I8, 24, 1, 1, false)         \
  X(I16, 25, 1, 2, false)        \
  X(I32, 26, 1, 4, false)        \
  X(I64, 27, 1, 8, false)        \
  X(F64, 28, 1, 8, false)        \
  X(IQ1_M, 29, 256, 56, false)   \
  X(BF16, 30, 1, 2, true)        \
  X(TQ1_0, 34, 256, 54, false)   \
  X(TQ2_0, 35, 256, 66, false)   \
  X(MXFP4, 39, 32, 17, false)

enum class DType : uint32_t {
#define STRATA_DTYPE_ENUMERATOR(name, id, block_size, block_bytes, compute) name = id,
  STRATA_DTYPES(STRATA_DTYPE_ENUMERATOR)
#undef STRATA_DTYPE_ENUMERATOR
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

// Q4_0: 32 weights, one fp16 scale. Element j (0..15) is the low nibble of qs[j], element
// j + 16 the high nibble; x = d * (q - 8).
struct BlockQ4_0 {
  uint16_t d;  // fp16
  uint8_t qs[16];
};
static_assert(sizeof(BlockQ4_0) == 18, "Q4_0 block layout");

// K-quants: super-blocks of 256 weights.
inline constexpr int kQK_K = 256;

// Q4_K: 8 sub-blocks of 32, each with a 6-bit scale and a 6-bit min packed in `scales` (see
// UnpackScaleMinK4). Per 64-element chunk c: qs[32c + l] holds element 64c + l in its low nibble
// and element 64c + 32 + l in its high nibble. x = d * sc * q - dmin * m.
struct BlockQ4_K {
  uint16_t d;     // fp16 super-block scale of the scales
  uint16_t dmin;  // fp16 super-block scale of the mins
  uint8_t scales[12];
  uint8_t qs[128];
};
static_assert(sizeof(BlockQ4_K) == 144, "Q4_K block layout");

// Q5_K: as Q4_K plus a fifth bit: bit 2c of qh[l] for element 64c + l, bit 2c+1 for element
// 64c + 32 + l. q in [0, 31].
struct BlockQ5_K {
  uint16_t d;
  uint16_t dmin;
  uint8_t scales[12];
  uint8_t qh[32];
  uint8_t qs[128];
};
static_assert(sizeof(BlockQ5_K) == 176, "Q5_K block layout");

// Q6_K: 16 sub-blocks of 16 with int8 scales; x = d * scales[e / 16] * (q - 32), q in [0, 63].
// Per 128-element half h (ql + 64h, qh + 32h), for l in [0, 32):
//   element 128h + l      : low nibble of ql[l],      qh[l] bits 0-1
//   element 128h + l + 32 : low nibble of ql[l + 32], qh[l] bits 2-3
//   element 128h + l + 64 : high nibble of ql[l],     qh[l] bits 4-5
//   element 128h + l + 96 : high nibble of ql[l + 32], qh[l] bits 6-7
struct BlockQ6_K {
  uint8_t ql[128];
  uint8_t qh[64];
  int8_t scales[16];
  uint16_t d;  // fp16
};
static_assert(sizeof(BlockQ6_K) == 210, "Q6_K block layout");

// Q8_K: activations for the K-quant dot products. x = d * qs[i]; bsums[j] is the sum of
// qs[16j .. 16j + 15].
struct BlockQ8_K {
  float d;
  int8_t qs[256];
  int16_t bsums[16];
};
static_assert(sizeof(BlockQ8_K) == 292, "Q8_K block layout");

// The 6-bit scale and min of sub-block j (0..7) of a Q4_K / Q5_K block.
inline void UnpackScaleMinK4(const uint8_t* s, int j, uint8_t* sc, uint8_t* m) {
  if (j < 4) {
    *sc = s[j] & 63;
    *m = s[j + 4] & 63;
  } else {
    *sc = static_cast<uint8_t>((s[j + 4] & 0xF) | ((s[j - 4] >> 6) << 4));
    *m = static_cast<uint8_t>((s[j + 4] >> 4) | ((s[j] >> 6) << 4));
  }
}

}  // namespace strata
