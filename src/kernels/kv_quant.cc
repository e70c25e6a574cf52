// Attention over a quantized KV cache (kernels::AttentionKv) and the row format of such a cache
// (kernels::QuantizeKvRow). The scores use the ISA table's dot product of the key type with
// its activation format (for Q8_0 and Q4_0 keys: the query quantized to Q8_0, an integer dot
// product per block, as llama.cpp does with a quantized K cache) and its softmax; the values
// are accumulated in f32 (llama.cpp's path for a non-F16 V cache), by AccumulateKvRow
// (scalar) or its AVX2 twin (kernels_kvq_avx2.cc).
#include <algorithm>
#include <cmath>
#include <cstring>

#include "base/fp16.h"
#include "kernels/kernels.h"
#include "kernels/kernels_impl.h"
#include "tensor/quant.h"

namespace strata::kernels {
namespace internal {
namespace {

// llama.cpp's reference Q4_0 quantizer (QuantizeRow), block by block through an aligned
// copy: rows of a head need not be aligned.
void QuantizeQ4_0Row(const float* x, void* dst, int64_t n) {
  auto* out = static_cast<BlockQ4_0*>(dst);
  for (int64_t b = 0; b < n / 32; ++b) {
    BlockQ4_0 blk;
    QuantizeRow(DType::Q4_0, x + b * 32, &blk, 32);
    std::memcpy(out + b, &blk, sizeof(blk));
  }
}

// scratch[h * n_kv + j] = score of key j for head h: the key type's dot product with the query
// in its activation format, times scale.
void Scores(const IsaKernels& isa, const KvAttention& a, const float* q, float* scratch) {
  const TypeKernels* kt = FindType(isa, a.k_type);
  const int hd = a.head_dim, nh = a.n_heads;
  const int64_t n_kv = a.n_kv;
  const auto* k = static_cast<const uint8_t*>(a.k);
  const size_t qx_bytes = 4 * static_cast<size_t>(hd);  // >= any activation row of hd
  alignas(64) uint8_t qx[kMaxAttnHeads * kMaxHeadDim * 4];
  const void* qv[kMaxAttnHeads];
  for (int h = 0; h < nh; ++h) {
    const float* qh = q + static_cast<int64_t>(h) * hd;
    qv[h] = qh;
    if (kt->quantize != nullptr) {
      kt->quantize(qh, qx + h * qx_bytes, hd);  // the query in the key type's activation format
      qv[h] = qx + h * qx_bytes;
    }
  }
  for (int64_t j = 0; j < n_kv; ++j) {
    const uint8_t* kj = k + static_cast<size_t>(j) * a.k_row_bytes;
    for (int h = 0; h < nh; ++h) scratch[h * n_kv + j] = kt->vec_dot(hd, kj, qv[h]) * a.scale;
  }
}

// out[h * out_stride + i] = sum over j of w[h * n_kv + j] * v[j][i], from 0, in key order.
void AccumulateValues(AccumulateKvRowFn accumulate, const KvAttention& a, const float* w,
                      float* out, int64_t out_stride) {
  const int hd = a.head_dim, nh = a.n_heads;
  const auto* v = static_cast<const uint8_t*>(a.v);
  for (int h = 0; h < nh; ++h) std::fill(out + h * out_stride, out + h * out_stride + hd, 0.0f);
  // Several heads: each value row is converted to f32 once (0 + 1 * x: exact), then added
  // with every head's weight.
  alignas(64) float vf[kMaxHeadDim];
  for (int64_t j = 0; j < a.n_kv; ++j) {
    const void* row = v + static_cast<size_t>(j) * a.v_row_bytes;
    DType type = a.v_type;
    if (nh > 1) {
      std::fill(vf, vf + hd, 0.0f);
      accumulate(type, row, 1.0f, vf, hd);
      row = vf;
      type = DType::F32;
    }
    for (int h = 0; h < nh; ++h) accumulate(type, row, w[h * a.n_kv + j], out + h * out_stride, hd);
  }
}

}  // namespace

void AccumulateKvRow(DType t, const void* row, float w, float* acc, int64_t n) {
  const auto* p = static_cast<const uint8_t*>(row);
  if (t == DType::F32) {
    const auto* x = static_cast<const float*>(row);
    for (int64_t i = 0; i < n; ++i) acc[i] = std::fma(x[i], w, acc[i]);
    return;
  }
  if (t == DType::F16) {
    for (int64_t i = 0; i < n; ++i) {
      uint16_t h;
      std::memcpy(&h, p + 2 * i, 2);
      acc[i] = std::fma(fp16_to_f32(h), w, acc[i]);
    }
    return;
  }
  for (int64_t b = 0; b < n / 32; ++b) {
    float* ab = acc + b * 32;
    if (t == DType::Q8_0) {
      BlockQ8_0 blk;
      std::memcpy(&blk, p + b * sizeof(blk), sizeof(blk));
      const float dw = fp16_to_f32(blk.d) * w;
      for (int i = 0; i < 32; ++i) ab[i] = std::fma(static_cast<float>(blk.qs[i]), dw, ab[i]);
    } else {  // Q4_0
      BlockQ4_0 blk;
      std::memcpy(&blk, p + b * sizeof(blk), sizeof(blk));
      const float dw = fp16_to_f32(blk.d) * w;
      for (int i = 0; i < 16; ++i) {
        ab[i] = std::fma(static_cast<float>((blk.qs[i] & 15) - 8), dw, ab[i]);
        ab[i + 16] = std::fma(static_cast<float>((blk.qs[i] >> 4) - 8), dw, ab[i + 16]);
      }
    }
  }
}

void QuantizeKvRowWith(const IsaKernels& isa, DType t, const float* x, void* dst, int64_t n) {
  if (t == DType::Q4_0) {
    QuantizeQ4_0Row(x, dst, n);
  } else if (t == DType::Q8_0) {
    FindType(isa, DType::Q8_0)->quantize(x, dst, n);
  } else {  // F16: as the F16 cache always stored it
    auto* out = static_cast<uint8_t*>(dst);
    for (int64_t i = 0; i < n; ++i) {
      const uint16_t h = f32_to_fp16(x[i]);
      std::memcpy(out + 2 * i, &h, 2);
    }
  }
}

void AttentionKvWith(const IsaKernels& isa, AccumulateKvRowFn accumulate, const KvAttention& a,
                     const float* q, float* out, float* scratch) {
  // Row by row for all heads at once: each key and value row is read from memory once and
  // reused from L1 for every head that shares it. Scores [n_heads, n_kv] in scratch, one
  // softmax per head (the table's), then out[h] = sum_j p[h][j] * v[j].
  Scores(isa, a, q, scratch);
  for (int h = 0; h < a.n_heads; ++h) isa.softmax(scratch + h * a.n_kv, a.n_kv);
  AccumulateValues(accumulate, a, scratch, out, a.head_dim);
}

void AttentionKvPartialWith(const IsaKernels& isa, AccumulateKvRowFn accumulate,
                            const KvAttention& a, const float* q, float* partial, float* scratch) {
  // One chunk of a split-KV row (kernels.h): the scores, their maximum, ExpPoly weights and
  // their sum per head, then the unnormalised weighted sum of the values.
  Scores(isa, a, q, scratch);
  const int64_t stride = AttentionPartialStride(a.head_dim);
  for (int h = 0; h < a.n_heads; ++h) {
    float* s = scratch + h * a.n_kv;
    float m = -INFINITY;
    for (int64_t j = 0; j < a.n_kv; ++j) m = std::fmax(m, s[j]);
    float sum = 0.0f;
    for (int64_t j = 0; j < a.n_kv; ++j) {
      s[j] = ref::ExpPoly(s[j] - m);
      sum += s[j];
    }
    partial[h * stride + a.head_dim] = m;
    partial[h * stride + a.head_dim + 1] = sum;
  }
  AccumulateValues(accumulate, a, scratch, partial, stride);
}

}  // namespace internal

namespace ref {
void QuantizeKvRow(DType t, const float* x, void* dst, int64_t n) {
  internal::QuantizeKvRowWith(internal::ScalarKernels(), t, x, dst, n);
}
void AttentionKv(const KvAttention& a, const float* q, float* out, float* scratch) {
  internal::AttentionKvWith(internal::ScalarKernels(), internal::AccumulateKvRow, a, q, out,
                            scratch);
}
void AttentionKvPartial(const KvAttention& a, const float* q, float* partial, float* scratch) {
  internal::AttentionKvPartialWith(internal::ScalarKernels(), internal::AccumulateKvRow, a, q,
                                   partial, scratch);
}
}  // namespace ref

}  // namespace strata::kernels
