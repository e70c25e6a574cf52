#include "model/kv_cache.h"

#include <sys/mman.h>

#include <cstring>
#include <utility>

namespace strata {

bool SupportedKvType(DType t) { return t == DType::F16 || t == DType::Q8_0 || t == DType::Q4_0; }

Result<DType> ParseKvType(const std::string& name) {
  auto t = ParseDType(name);
  if (!t.ok() || !SupportedKvType(*t))
    return Errorf("unknown KV cache type '%s' (f16, q8_0 or q4_0)", name.c_str());
  return *t;
}

Status KvCache::CheckTypes(DType k_type, DType v_type, int head_dim) {
  for (DType t : {k_type, v_type}) {
    if (!SupportedKvType(t))
      return Errorf("KV cache type %s is not supported (f16, q8_0 or q4_0)", DTypeName(t));
    if (head_dim % Info(t).block_size != 0)
      return Errorf("KV cache type %s needs a head size divisible by %lld (this model's is %d)",
                    DTypeName(t), static_cast<long long>(Info(t).block_size), head_dim);
  }
  return Status::Ok();
}

uint64_t KvCache::BytesFor(int n_layers, int n_seq, int n_ctx, int64_t kv_dim, DType k_type,
                           DType v_type) {
  const uint64_t row = RowBytesUnchecked(k_type, kv_dim) + RowBytesUnchecked(v_type, kv_dim);
  return static_cast<uint64_t>(n_layers) * static_cast<uint64_t>(n_seq) *
         static_cast<uint64_t>(n_ctx) * row;
}

Result<KvCache> KvCache::Create(int n_layers, int n_seq, int n_ctx, int64_t kv_dim, DType k_type,
                                DType v_type) {
  if (n_layers <= 0 || n_seq <= 0 || n_ctx <= 0 || kv_dim <= 0)
    return Errorf("invalid KV cache shape: %d layers, %d sequences, %d positions, kv dim %lld",
                  n_layers, n_seq, n_ctx, static_cast<long long>(kv_dim));
  for (DType t : {k_type, v_type}) {
    if (!SupportedKvType(t)) return Errorf("KV cache type %s is not supported", DTypeName(t));
    if (kv_dim % Info(t).block_size != 0)
      return Errorf("KV cache type %s needs a KV width divisible by %lld (this model's is %lld)",
                    DTypeName(t), static_cast<long long>(Info(t).block_size),
                    static_cast<long long>(kv_dim));
  }
  KvCache c;
  c.n_layers_ = n_layers;
  c.n_seq_ = n_seq;
  c.n_ctx_ = n_ctx;
  c.kv_dim_ = kv_dim;
  c.k_type_ = k_type;
  c.v_type_ = v_type;
  c.k_row_ = static_cast<size_t>(RowBytesUnchecked(k_type, kv_dim));
  c.v_row_ = static_cast<size_t>(RowBytesUnchecked(v_type, kv_dim));
  c.bytes_ = BytesFor(n_layers, n_seq, n_ctx, kv_dim, k_type, v_type);
  void* p = ::mmap(nullptr, c.bytes_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED)
    return Errorf("cannot allocate a KV cache of %.1f MiB",
                  static_cast<double>(c.bytes_) / (1 << 20));
  c.base_ = static_cast<uint8_t*>(p);
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
    k_type_ = o.k_type_;
    v_type_ = o.v_type_;
    k_row_ = o.k_row_;
    v_row_ = o.v_row_;
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
  for (int l = 0; l < n_layers_; ++l) {
    std::memcpy(KRows(l, dst), KRows(l, src), k_row_ * static_cast<size_t>(n));
    std::memcpy(VRows(l, dst), VRows(l, src), v_row_ * static_cast<size_t>(n));
  }
  set_length(dst, n);
}

}  // namespace strata
