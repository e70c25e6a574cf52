// Key/value cache for the layers of one model range: F16 by default (as llama.cpp's), or keys
// and values each quantized to Q8_0 / Q4_0 blocks (llama.cpp's --cache-type-k / -v); one slot
// per sequence, each slot holding up to n_ctx positions. Memory comes from an anonymous
// mapping, so only the positions actually written become resident.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "base/status.h"
#include "tensor/dtype.h"

namespace strata {

// True for the KV cache types: F16, Q8_0, Q4_0.
bool SupportedKvType(DType t);
// Parses a --cache-type-k / -v value ("f16", "q8_0", "q4_0"; case-insensitive).
Result<DType> ParseKvType(const std::string& name);

class KvCache {
 public:
  // n_layers: layers of the range; kv_dim: n_kv_heads * head_dim. k_type / v_type: F16, Q8_0
  // or Q4_0 (see SupportedKvType; quantized types need head_dim % 32 == 0, the caller checks).
  static Result<KvCache> Create(int n_layers, int n_seq, int n_ctx, int64_t kv_dim,
                                DType k_type = DType::F16, DType v_type = DType::F16);
  // Error unless both types are KV cache types usable with heads of head_dim elements (the
  // block types need head_dim % 32 == 0: each head's slice of a row is whole blocks).
  static Status CheckTypes(DType k_type, DType v_type, int head_dim);
  // Bytes Create allocates for this shape (the planner's and /health's figure).
  static uint64_t BytesFor(int n_layers, int n_seq, int n_ctx, int64_t kv_dim, DType k_type,
                           DType v_type);
  KvCache(KvCache&& o) noexcept;
  KvCache& operator=(KvCache&& o) noexcept;
  KvCache(const KvCache&) = delete;
  ~KvCache();

  int n_layers() const { return n_layers_; }
  int n_seq() const { return n_seq_; }
  int n_ctx() const { return n_ctx_; }
  int64_t kv_dim() const { return kv_dim_; }
  uint64_t bytes() const { return bytes_; }
  DType k_type() const { return k_type_; }
  DType v_type() const { return v_type_; }
  bool quantized() const { return k_type_ != DType::F16 || v_type_ != DType::F16; }
  size_t k_row_bytes() const { return k_row_; }  // one position's keys (kv_dim elements)
  size_t v_row_bytes() const { return v_row_; }

  // Rows of layer `l` (0-based within the range) for sequence `seq`: [n_ctx] rows of
  // k_row_bytes() / v_row_bytes(). K / V: the same as [n_ctx, kv_dim] f16 (F16 types only).
  uint8_t* KRows(int l, int seq) { return base_ + Offset(l, seq, 0); }
  uint8_t* VRows(int l, int seq) { return base_ + Offset(l, seq, 1); }
  const uint8_t* KRows(int l, int seq) const { return base_ + Offset(l, seq, 0); }
  const uint8_t* VRows(int l, int seq) const { return base_ + Offset(l, seq, 1); }
  uint16_t* K(int l, int seq) { return reinterpret_cast<uint16_t*>(KRows(l, seq)); }
  uint16_t* V(int l, int seq) { return reinterpret_cast<uint16_t*>(VRows(l, seq)); }
  const uint16_t* K(int l, int seq) const {
    return reinterpret_cast<const uint16_t*>(KRows(l, seq));
  }
  const uint16_t* V(int l, int seq) const {
    return reinterpret_cast<const uint16_t*>(VRows(l, seq));
  }

  // Number of positions of `seq` that hold valid keys/values (0..n_ctx).
  int length(int seq) const { return lengths_[static_cast<size_t>(seq)]; }
  void set_length(int seq, int n) { lengths_[static_cast<size_t>(seq)] = n; }
  void Clear(int seq) { set_length(seq, 0); }
  // Copies the first n positions of every layer from sequence src to dst (prompt reuse).
  void CopyPrefix(int src, int dst, int n);

 private:
  KvCache() = default;
  size_t Offset(int l, int seq, int kv) const {
    const size_t ctx = static_cast<size_t>(n_ctx_);
    return (static_cast<size_t>(l) * n_seq_ + seq) * ctx * (k_row_ + v_row_) +
           (kv ? ctx * k_row_ : 0);
  }
  int n_layers_ = 0, n_seq_ = 0, n_ctx_ = 0;
  int64_t kv_dim_ = 0;
  uint64_t bytes_ = 0;
  DType k_type_ = DType::F16, v_type_ = DType::F16;
  size_t k_row_ = 0, v_row_ = 0;
  uint8_t* base_ = nullptr;
  std::vector<int> lengths_;
};

}  // namespace strata
