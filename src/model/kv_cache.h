// Key/value cache for the layers of one model range: F16 (as llama.cpp's default), one slot
// per sequence, each slot holding up to n_ctx positions. Memory comes from an anonymous
// mapping, so only the positions actually written become resident.
#pragma once

#include <cstdint>
#include <vector>

#include "base/status.h"

namespace strata {

class KvCache {
 public:
  // n_layers: layers of the range; kv_dim: n_kv_heads * head_dim.
  static Result<KvCache> Create(int n_layers, int n_seq, int n_ctx, int64_t kv_dim);
  KvCache(KvCache&& o) noexcept;
  KvCache& operator=(KvCache&& o) noexcept;
  KvCache(const KvCache&) = delete;
  ~KvCache();

  int n_layers() const { return n_layers_; }
  int n_seq() const { return n_seq_; }
  int n_ctx() const { return n_ctx_; }
  int64_t kv_dim() const { return kv_dim_; }
  uint64_t bytes() const { return bytes_; }

  // [n_ctx, kv_dim] f16 rows of layer `l` (0-based within the range) for sequence `seq`.
  uint16_t* K(int l, int seq) { return base_ + Offset(l, seq, 0); }
  uint16_t* V(int l, int seq) { return base_ + Offset(l, seq, 1); }
  const uint16_t* K(int l, int seq) const { return base_ + Offset(l, seq, 0); }
  const uint16_t* V(int l, int seq) const { return base_ + Offset(l, seq, 1); }

  // Number of positions of `seq` that hold valid keys/values (0..n_ctx).
  int length(int seq) const { return lengths_[static_cast<size_t>(seq)]; }
  void set_length(int seq, int n) { lengths_[static_cast<size_t>(seq)] = n; }
  void Clear(int seq) { set_length(seq, 0); }
  // Copies the first n positions of every layer from sequence src to dst (prompt reuse).
  void CopyPrefix(int src, int dst, int n);

 private:
  KvCache() = default;
  size_t Offset(int l, int seq, int kv) const {
    return ((static_cast<size_t>(l) * n_seq_ + seq) * 2 + kv) * static_cast<size_t>(n_ctx_) *
           static_cast<size_t>(kv_dim_);
  }
  int n_layers_ = 0, n_seq_ = 0, n_ctx_ = 0;
  int64_t kv_dim_ = 0;
  uint64_t bytes_ = 0;
  uint16_t* base_ = nullptr;
  std::vector<int> lengths_;
};

}  // namespace strata
