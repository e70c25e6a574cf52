// Private to src/tensor: reference quantizers of the 4/5/6-bit weight types and of Q8_K
// (quant_lowbit.cc). Use QuantizeRow / DequantizeRow from quant.h instead.
#pragma once

#include <cstdint>

#include "tensor/dtype.h"

namespace strata::internal {

void QuantizeQ4_0(const float* x, BlockQ4_0* y, int64_t n);
void DequantizeQ4_0(const BlockQ4_0* x, float* y, int64_t n);
void QuantizeQ4_K(const float* x, BlockQ4_K* y, int64_t n);
void DequantizeQ4_K(const BlockQ4_K* x, float* y, int64_t n);
void QuantizeQ5_K(const float* x, BlockQ5_K* y, int64_t n);
void DequantizeQ5_K(const BlockQ5_K* x, float* y, int64_t n);
void QuantizeQ6_K(const float* x, BlockQ6_K* y, int64_t n);
void DequantizeQ6_K(const BlockQ6_K* x, float* y, int64_t n);
void QuantizeQ8_K(const float* x, BlockQ8_K* y, int64_t n);
void DequantizeQ8_K(const BlockQ8_K* x, float* y, int64_t n);

}  // namespace strata::internal
