#include "tensor/quant.h"

#include <cmath>
#include <cstring>

#include "base/fp16.h"
#include "tensor/quant_lowbit.h"

namespace strata {
namespace {

void QuantizeQ8_0(const float* x, BlockQ8_0* y, int64_t n) {
  for (int64_t b = 0; b < n / 32; ++b) {
    float amax = 0.0f;
    for (int j = 0; j < 32; ++j) amax = std::max(amax, std::fabs(x[b * 32 + j]));
    const float d = amax / 127.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    y[b].d = f32_to_fp16(d);
    for (int j = 0; j < 32; ++j) y[b].qs[j] = static_cast<int8_t>(std::roundf(x[b * 32 + j] * id));
  }
}

void DequantizeQ8_0(const BlockQ8_0* x, float* y, int64_t n) {
  for (int64_t b = 0; b < n / 32; ++b) {
    const float d = fp16_to_f32(x[b].d);
    for (int j = 0; j < 32; ++j) y[b * 32 + j] = d * static_cast<float>(x[b].qs[j]);
  }
}

}  // namespace

bool CanQuantize(DType t) {
  switch (t) {
    case DType::F32:
    case DType::F16:
    case DType::BF16:
    case DType::Q8_0:
    case DType::Q4_0:
    case DType::Q4_K:
    case DType::Q5_K:
    case DType::Q6_K:
    case DType::Q8_K: return true;
    default: return false;
  }
}
bool CanDequantize(DType t) { return CanQuantize(t); }

void QuantizeRow(DType t, const float* src, void* dst, int64_t n) {
  switch (t) {
    case DType::F32: std::memcpy(dst, src, static_cast<size_t>(n) * 4); break;
    case DType::F16: {
      auto* d = static_cast<uint16_t*>(dst);
      for (int64_t i = 0; i < n; ++i) d[i] = f32_to_fp16(src[i]);
      break;
    }
    case DType::BF16: {
      auto* d = static_cast<uint16_t*>(dst);
      for (int64_t i = 0; i < n; ++i) d[i] = f32_to_bf16(src[i]);
      break;
    }
    case DType::Q8_0: QuantizeQ8_0(src, static_cast<BlockQ8_0*>(dst), n); break;
    case DType::Q4_0: internal::QuantizeQ4_0(src, static_cast<BlockQ4_0*>(dst), n); break;
    case DType::Q4_K: internal::QuantizeQ4_K(src, static_cast<BlockQ4_K*>(dst), n); break;
    case DType::Q5_K: internal::QuantizeQ5_K(src, static_cast<BlockQ5_K*>(dst), n); break;
    case DType::Q6_K: internal::QuantizeQ6_K(src, static_cast<BlockQ6_K*>(dst), n); break;
    case DType::Q8_K: internal::QuantizeQ8_K(src, static_cast<BlockQ8_K*>(dst), n); break;
    default: break;
  }
}

void DequantizeRow(DType t, const void* src, float* dst, int64_t n) {
  switch (t) {
    case DType::F32: std::memcpy(dst, src, static_cast<size_t>(n) * 4); break;
    case DType::F16: {
      auto* s = static_cast<const uint16_t*>(src);
      for (int64_t i = 0; i < n; ++i) dst[i] = fp16_to_f32(s[i]);
      break;
    }
    case DType::BF16: {
      auto* s = static_cast<const uint16_t*>(src);
      for (int64_t i = 0; i < n; ++i) dst[i] = bf16_to_f32(s[i]);
      break;
    }
    case DType::Q8_0: DequantizeQ8_0(static_cast<const BlockQ8_0*>(src), dst, n); break;
    case DType::Q4_0: internal::DequantizeQ4_0(static_cast<const BlockQ4_0*>(src), dst, n); break;
    case DType::Q4_K: internal::DequantizeQ4_K(static_cast<const BlockQ4_K*>(src), dst, n); break;
    case DType::Q5_K: internal::DequantizeQ5_K(static_cast<const BlockQ5_K*>(src), dst, n); break;
    case DType::Q6_K: internal::DequantizeQ6_K(static_cast<const BlockQ6_K*>(src), dst, n); break;
    case DType::Q8_K: internal::DequantizeQ8_K(static_cast<const BlockQ8_K*>(src), dst, n); break;
    default: break;
  }
}

}  // namespace strata
