// Scalar reference conversion between f32 and each storage type. These define the formats;
// SIMD kernels are tested against them.
#pragma once

#include <cstdint>

#include "tensor/dtype.h"

namespace strata {

// True when Quantize/Dequantize support the type.
bool CanQuantize(DType t);
bool CanDequantize(DType t);

// dst holds RowBytes(t, n) bytes; n must be a multiple of the block size.
void QuantizeRow(DType t, const float* src, void* dst, int64_t n);
void DequantizeRow(DType t, const void* src, float* dst, int64_t n);

}  // namespace strata
