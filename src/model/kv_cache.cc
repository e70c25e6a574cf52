#include "model/kv_cache.h"

#include <sys/mman.h>

#include <cstring>
#include <utility>

namespace strata {

Result<KvCache> KvCache::Create(int n_layers, int n_seq, int n_ctx, int64_t kv_dim) {
  if (n_layers <= 0 || n_seq <= 0 || n_ctx <= 0 || kv_dim <= 0)
    return Errorf("invalid KV cache shape: %d layers, %d sequences, %d positions, kv dim %lld",
                  n_layers, n_seq, n_ctx, static_cast<long long>(kv_dim));
  KvCache c;
  c.n_layers_ = n_layers;
  c.n_seq_ = n_seq;
  c.n_ctx_ = n_ctx;
  c.kv_dim_ = kv_dim;
  c.bytes_ = static_cast<uint64_t>(n_layers) * n_seq * 2 * n_ctx * kv_dim * sizeof(uint16_t);
  void* p = ::mmap(nullptr, c.bytes_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED)
    return Errorf("cannot allocate a KV cache of %.1f MiB", static_cast<double>(c.bytes_) / (1 << 20));
  c.base_ = static_cast<uint16_t*>(p);
  c.lengths_.assign(static_cast<size_t>(n_seq), 0);
  return c;
}

KvCache::KvCache(KvCache&& o) noexcept { *this = std::move(o); }

KvCache& KvCache::operator=(KvCache&& o) noexcept {
  if (this != &o) {
    if (base_) ::munmap(base_, bytes_);
    n_layers_ = o.n_layers_;
    n_seq_ = o.n_seq_;
    n_ctx_ = o.n_ctx_;
    kv_dim_ = o.kv_dim_;
    bytes_ = o.bytes_;
    base_ = std::exchange(o.base_, nullptr);
    lengths_ = std::move(o.lengths_);
  }
  return *this;
}

KvCache::~KvCache() {
  if (base_) ::munmap(base_, bytes_);
}

void KvCache::CopyPrefix(int src, int dst, int n) {
  if (src == dst || n <= 0) return;
  const size_t row = static_cast<size_t>(kv_dim_) * sizeof(uint16_t);
  for (int l = 0; l < n_layers_; ++l) {
    std::memcpy(K(l, dst), K(l, src), row * static_cast<size_t>(n));
    std::memcpy(V(l, dst), V(l, src), row * static_cast<size_t>(n));
  }
  set_length(dst, n);
}

}  // namespace strata
