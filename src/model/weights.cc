#include "model/weights.h"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstring>
#include <thread>

#include "base/mmap.h"
#include "base/progress.h"

#include "tensor/quant.h"

namespace strata {

Result<std::unique_ptr<Model>> Model::Load(const std::string& path, int first, int last) {
  STRATA_ASSIGN_OR_RETURN(auto file, gguf::File::Open(path));
  auto m = FromFile(std::move(file), first, last);
  if (!m.ok()) return m.status().With("loading model '" + path + "'");
  return m;
}

Result<std::unique_ptr<Model>> Model::Load(const std::string& path, const ModelLoadOptions& o) {
  STRATA_ASSIGN_OR_RETURN(auto m, Load(path, o.first, o.last));
  if (!o.mmap) STRATA_RETURN_IF_ERROR(m->CopyToHugePages(o.progress).status());
  return m;
}

Result<std::unique_ptr<Model>> Model::FromFile(std::shared_ptr<gguf::File> file, int first,
                                               int last) {
  std::unique_ptr<Model> m(new Model());
  m->file_ = std::move(file);
  STRATA_ASSIGN_OR_RETURN(m->cfg_, ConfigFromGguf(*m->file_));
  if (last < 0) last = m->cfg_.n_layers;
  if (first < 0 || first >= last || last > m->cfg_.n_layers)
    return Errorf("invalid layer range [%d, %d) for a model of %d layers", first, last,
                  m->cfg_.n_layers);
  m->first_ = first;
  m->last_ = last;
  STRATA_RETURN_IF_ERROR(m->Bind());
  return m;
}

Result<Matrix> Model::BindMatrix(const std::string& name, int64_t rows, int64_t cols) {
  const gguf::TensorInfo* t = file_->FindTensor(name);
  if (!t) return Errorf("tensor '%s' is missing", name.c_str());
  if (t->dims.size() != 2 || t->dims[0] != cols || t->dims[1] != rows)
    return Errorf("tensor '%s' has shape [%lld%s%s], expected [%lld, %lld]", name.c_str(),
                  static_cast<long long>(t->dims[0]), t->dims.size() > 1 ? ", " : "",
                  t->dims.size() > 1 ? std::to_string(t->dims[1]).c_str() : "",
                  static_cast<long long>(cols), static_cast<long long>(rows));
  if (!Info(t->type).compute)
    return Errorf(
        "tensor '%s' has type %s, which is not supported (supported: F32, F16, BF16, "
        "Q8_0, Q4_0, Q4_K, Q5_K, Q6_K)",
        name.c_str(), DTypeName(t->type));
  Matrix mat;
  mat.data = t->data;
  mat.type = t->type;
  mat.rows = rows;
  mat.cols = cols;
  mat.row_bytes = RowBytesUnchecked(t->type, cols);
  bound_bytes_ += t->nbytes;
  bound_ranges_.emplace_back(static_cast<const uint8_t*>(t->data), t->nbytes);
  return mat;
}

Result<std::vector<float>> Model::BindVector(const std::string& name, int64_t n, bool optional) {
  const gguf::TensorInfo* t = file_->FindTensor(name);
  if (!t) {
    if (optional) return std::vector<float>();
    return Errorf("tensor '%s' is missing", name.c_str());
  }
  if (t->n_elements() != n || t->dims[0] != n)
    return Errorf("tensor '%s' has %lld elements, expected %lld", name.c_str(),
                  static_cast<long long>(t->n_elements()), static_cast<long long>(n));
  if (!CanDequantize(t->type))
    return Errorf("tensor '%s' has unsupported type %s", name.c_str(), DTypeName(t->type));
  std::vector<float> v(static_cast<size_t>(n));
  DequantizeRow(t->type, t->data, v.data(), n);
  bound_bytes_ += t->nbytes;
  return v;
}

Status Model::Bind() {
  const ModelConfig& c = cfg_;
  if (has_embedding()) {
    STRATA_ASSIGN_OR_RETURN(tok_embd_, BindMatrix("token_embd.weight", c.n_vocab, c.hidden));
  }
  if (has_head()) {
    STRATA_ASSIGN_OR_RETURN(output_norm_, BindVector("output_norm.weight", c.hidden, false));
    if (file_->FindTensor("output.weight")) {
      STRATA_ASSIGN_OR_RETURN(output_, BindMatrix("output.weight", c.n_vocab, c.hidden));
    } else {  // tied embeddings
      if (has_embedding()) {
        output_ = tok_embd_;
      } else {
        STRATA_ASSIGN_OR_RETURN(output_, BindMatrix("token_embd.weight", c.n_vocab, c.hidden));
      }
    }
  }
  // Rope divisors: llama3-style per-frequency factors, combined with linear scaling.
  STRATA_ASSIGN_OR_RETURN(rope_factors_, BindVector("rope_freqs.weight", c.head_dim / 2, true));
  if (c.rope_freq_scale != 1.0f) {
    if (rope_factors_.empty()) rope_factors_.assign(static_cast<size_t>(c.head_dim / 2), 1.0f);
    for (float& f : rope_factors_) f /= c.rope_freq_scale;
  }

  for (int il = first_; il < last_; ++il) {
    const std::string p = "blk." + std::to_string(il) + ".";
    LayerWeights L;
    Status st = [&]() -> Status {
      STRATA_ASSIGN_OR_RETURN(L.attn_norm, BindVector(p + "attn_norm.weight", c.hidden, false));
      STRATA_ASSIGN_OR_RETURN(L.wq, BindMatrix(p + "attn_q.weight", c.q_dim(), c.hidden));
      STRATA_ASSIGN_OR_RETURN(L.wk, BindMatrix(p + "attn_k.weight", c.kv_dim(), c.hidden));
      STRATA_ASSIGN_OR_RETURN(L.wv, BindMatrix(p + "attn_v.weight", c.kv_dim(), c.hidden));
      STRATA_ASSIGN_OR_RETURN(L.wo, BindMatrix(p + "attn_output.weight", c.hidden, c.q_dim()));
      // Biases: required for qwen2, optional elsewhere.
      STRATA_ASSIGN_OR_RETURN(L.bq, BindVector(p + "attn_q.bias", c.q_dim(), !c.qkv_bias));
      STRATA_ASSIGN_OR_RETURN(L.bk, BindVector(p + "attn_k.bias", c.kv_dim(), !c.qkv_bias));
      STRATA_ASSIGN_OR_RETURN(L.bv, BindVector(p + "attn_v.bias", c.kv_dim(), !c.qkv_bias));
      STRATA_ASSIGN_OR_RETURN(L.ffn_norm, BindVector(p + "ffn_norm.weight", c.hidden, false));
      STRATA_ASSIGN_OR_RETURN(L.w_gate, BindMatrix(p + "ffn_gate.weight", c.ffn, c.hidden));
      STRATA_ASSIGN_OR_RETURN(L.w_up, BindMatrix(p + "ffn_up.weight", c.ffn, c.hidden));
      STRATA_ASSIGN_OR_RETURN(L.w_down, BindMatrix(p + "ffn_down.weight", c.hidden, c.ffn));
      return Status::Ok();
    }();
    if (!st.ok()) return st.With("layer " + std::to_string(il));
    layers_.push_back(std::move(L));
  }
  return Status::Ok();
}

void DequantizeMatrixRow(const Matrix& m, int64_t row, float* out) {
  DequantizeRow(m.type, m.data + static_cast<uint64_t>(row) * m.row_bytes, out, m.cols);
}

void Model::PageIn(bool progress) const {
  auto ranges = bound_ranges_;
  std::sort(ranges.begin(), ranges.end());
  ranges.erase(std::unique(ranges.begin(), ranges.end()), ranges.end());  // tied output
  uint64_t total = 0;
  for (const auto& r : ranges) total += r.second;
  Progress p("loading " + cfg_.name, progress ? total : 0);
  const uint64_t page = static_cast<uint64_t>(sysconf(_SC_PAGESIZE));
  volatile uint8_t sink = 0;
  for (const auto& [data, n] : ranges) {
    for (uint64_t off = 0; off < n; off += page) {
      sink = sink ^ data[off];  // one read per page faults it in
      if (progress && (off & ((uint64_t{16} << 20) - 1)) == 0 && off > 0) p.Add(16u << 20);
    }
    if (progress) p.Add(n - (n > 0 ? ((n - 1) / (16u << 20)) * (16u << 20) : 0));
  }
  (void)sink;
  if (progress) p.Finish();
}

namespace {
constexpr uint64_t kCopyAlign = 64;

struct CopyPiece {
  uint8_t* dst;
  const uint8_t* src;
  uint64_t n;
};

// Copies the pieces on every core at once: the first touch of fresh memory (the kernel
// zeroing it, and on a VM the host backing it) costs more than the copy itself.
void CopyPieces(const std::vector<CopyPiece>& pieces, Progress* p) {
  std::atomic<size_t> next{0};
  auto work = [&] {
    for (size_t i; (i = next.fetch_add(1, std::memory_order_relaxed)) < pieces.size();) {
      std::memcpy(pieces[i].dst, pieces[i].src, pieces[i].n);
      ReleaseMappedPages(pieces[i].src, pieces[i].n);  // the peak stays near one copy
      if (p != nullptr) p->Add(pieces[i].n);
    }
  };
  std::vector<std::thread> threads;
  const unsigned n_threads = std::clamp(std::thread::hardware_concurrency(), 1u, 8u);
  for (unsigned t = 1; t < n_threads; ++t) threads.emplace_back(work);
  work();
  for (std::thread& t : threads) t.join();
}
}  // namespace

bool TransparentHugePagesAvailable() {
  std::FILE* f = std::fopen("/sys/kernel/mm/transparent_hugepage/enabled", "r");
  if (f == nullptr) return false;
  char line[128] = {0};
  const bool read = std::fgets(line, sizeof line, f) != nullptr;
  std::fclose(f);
  return read && std::strstr(line, "[never]") == nullptr;
}

Result<uint64_t> Model::CopyToHugePages(bool progress) {
  if (copy_) return copied_bytes_;
  if (!TransparentHugePagesAvailable()) return uint64_t{0};  // a copy would gain nothing
  // The streamed matrices, each once (a tied output head is the embedding itself).
  std::vector<Matrix*> mats;
  if (has_head()) mats.push_back(&output_);
  for (LayerWeights& L : layers_)
    for (Matrix* m : {&L.wq, &L.wk, &L.wv, &L.wo, &L.w_gate, &L.w_up, &L.w_down}) mats.push_back(m);
  std::vector<std::pair<const uint8_t*, uint64_t>> ranges;
  for (const Matrix* m : mats)
    if (m->present()) ranges.emplace_back(m->data, static_cast<uint64_t>(m->rows) * m->row_bytes);
  std::sort(ranges.begin(), ranges.end());
  ranges.erase(std::unique(ranges.begin(), ranges.end()), ranges.end());
  uint64_t total = 0;
  for (const auto& r : ranges) total += (r.second + kCopyAlign - 1) / kCopyAlign * kCopyAlign;
  if (total == 0) return uint64_t{0};
  Result<std::shared_ptr<uint8_t>> region = AllocateHugePages(total);
  if (!region.ok()) return region.status().With("copying the weights into huge pages");
  uint8_t* base = region->get();
  std::vector<CopyPiece> pieces;
  std::vector<std::pair<const uint8_t*, const uint8_t*>> moved;  // old -> new, by old
  uint64_t off = 0;
  for (const auto& [src, n] : ranges) {
    for (uint64_t o = 0; o < n; o += kHugePageBytes)
      pieces.push_back({base + off + o, src + o, std::min(kHugePageBytes, n - o)});
    moved.emplace_back(src, base + off);
    off += (n + kCopyAlign - 1) / kCopyAlign * kCopyAlign;
  }
  {
    Progress p("loading " + cfg_.name, progress ? total : 0);
    CopyPieces(pieces, progress ? &p : nullptr);
  }
  for (const auto& [src, n] : ranges) ReleaseMappedPages(src, n);  // pages across pieces' edges
  auto by_old = [](const auto& a, const auto& b) { return a.first < b.first; };
  auto repoint = [&](Matrix* m) {
    auto it =
        std::lower_bound(moved.begin(), moved.end(), std::make_pair(m->data, m->data), by_old);
    if (it != moved.end() && it->first == m->data) m->data = it->second;
  };
  for (Matrix* m : mats) repoint(m);
  if (has_embedding() && has_head() && tok_embd_.data != nullptr) repoint(&tok_embd_);  // tied
  // PageIn then touches only what stays mapped (the copies are resident already).
  auto copied = [&](const std::pair<const uint8_t*, uint64_t>& r) {
    return std::binary_search(ranges.begin(), ranges.end(), r, by_old);
  };
  bound_ranges_.erase(std::remove_if(bound_ranges_.begin(), bound_ranges_.end(), copied),
                      bound_ranges_.end());
  copy_ = std::move(region).value();
  copied_bytes_ = total;
  return total;
}

}  // namespace strata
