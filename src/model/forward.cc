#include "model/forward.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "base/fp16.h"
#include "kernels/kernels.h"

namespace strata {
namespace {

void AddBias(float* y, const std::vector<float>& b, int n_tok, int64_t dim) {
  if (b.empty()) return;
  for (int t = 0; t < n_tok; ++t) kernels::Add(y + t * dim, b.data(), dim);
}

void Grow(std::vector<float>& v, size_t n) {
  if (v.size() < n) v.resize(n);
}

}  // namespace

Forward::Forward(const Model& model, KvCache* cache, ThreadPool* pool)
    : model_(model), cache_(cache), pool_(pool) {}

Status Forward::Validate(const Batch& b) const {
  const ModelConfig& c = model_.config();
  const int n = b.size();
  if (n == 0) return Status::Error("empty batch");
  if (b.seq.size() != b.pos.size() || b.output.size() != b.pos.size() ||
      (model_.has_embedding() && b.tokens.size() != b.pos.size()))
    return Status::Error("batch arrays differ in length");
  if (cache_->n_layers() != model_.last_layer() - model_.first_layer() ||
      cache_->kv_dim() != c.kv_dim())
    return Status::Error("KV cache does not match the model range");
  std::vector<int> next(static_cast<size_t>(cache_->n_seq()), -1);
  for (int i = 0; i < n; ++i) {
    const int s = b.seq[i];
    if (s < 0 || s >= cache_->n_seq())
      return Errorf("sequence %d is out of range (%d slots)", s, cache_->n_seq());
    if (model_.has_embedding() && (b.tokens[i] < 0 || b.tokens[i] >= c.n_vocab))
      return Errorf("token id %d is out of range (vocabulary of %lld)", b.tokens[i],
                    static_cast<long long>(c.n_vocab));
    int& expect = next[static_cast<size_t>(s)];
    if (expect < 0) expect = cache_->length(s);
    if (b.pos[i] != expect)
      return Errorf("sequence %d: token at position %d, expected position %d", s, b.pos[i], expect);
    if (b.pos[i] >= cache_->n_ctx())
      return Errorf("sequence %d: position %d exceeds the context size %d", s, b.pos[i],
                    cache_->n_ctx());
    ++expect;
  }
  return Status::Ok();
}

Status Forward::Run(const Batch& b, const float* in_hidden, std::vector<float>* out) {
  STRATA_RETURN_IF_ERROR(Validate(b));
  const ModelConfig& c = model_.config();
  const int n = b.size();
  const int64_t H = c.hidden, QD = c.q_dim(), KVD = c.kv_dim(), FF = c.ffn;
  const size_t nz = static_cast<size_t>(n);
  Grow(x_, nz * H);      // [n, hidden] residual stream
  Grow(xn_, nz * H);     // [n, hidden] normed input of a block
  Grow(q_, nz * QD);     // [n, n_heads * head_dim]
  Grow(k_, nz * KVD);    // [n, n_kv_heads * head_dim]
  Grow(v_, nz * KVD);    // [n, n_kv_heads * head_dim]
  Grow(attn_, nz * QD);  // [n, n_heads * head_dim]
  Grow(proj_, nz * H);   // [n, hidden]
  Grow(gate_, nz * FF);  // [n, ffn]
  Grow(up_, nz * FF);    // [n, ffn]

  float* x = x_.data();
  if (model_.has_embedding()) {
    for (int t = 0; t < n; ++t) DequantizeMatrixRow(model_.tok_embd(), b.tokens[t], x + t * H);
  } else {
    if (!in_hidden) return Status::Error("this layer range needs input activations");
    std::memcpy(x, in_hidden, nz * H * sizeof(float));
  }

  const float* rope_ff = model_.rope_factors().empty() ? nullptr : model_.rope_factors().data();
  for (int il = model_.first_layer(); il < model_.last_layer(); ++il) {
    const LayerWeights& L = model_.layer(il);
    const int l = il - model_.first_layer();

    // Attention block.
    for (int t = 0; t < n; ++t)
      kernels::RmsNorm(x + t * H, L.attn_norm.data(), xn_.data() + t * H, H, c.rms_eps);
    kernels::MatMul(L.wq.data, L.wq.type, QD, H, xn_.data(), n, q_.data(), pool_, &mm_scratch_);
    kernels::MatMul(L.wk.data, L.wk.type, KVD, H, xn_.data(), n, k_.data(), pool_, &mm_scratch_);
    kernels::MatMul(L.wv.data, L.wv.type, KVD, H, xn_.data(), n, v_.data(), pool_, &mm_scratch_);
    AddBias(q_.data(), L.bq, n, QD);
    AddBias(k_.data(), L.bk, n, KVD);
    AddBias(v_.data(), L.bv, n, KVD);
    for (int t = 0; t < n; ++t) {
      kernels::Rope(q_.data() + t * QD, c.n_heads, c.head_dim, b.pos[t], c.rope_base, rope_ff,
                    c.rope_neox);
      kernels::Rope(k_.data() + t * KVD, c.n_kv_heads, c.head_dim, b.pos[t], c.rope_base, rope_ff,
                    c.rope_neox);
      // Store this token's key and value in its sequence's cache rows.
      if (cache_->quantized()) {
        const size_t pos = static_cast<size_t>(b.pos[t]);
        kernels::QuantizeKvRow(cache_->k_type(), k_.data() + t * KVD,
                               cache_->KRows(l, b.seq[t]) + pos * cache_->k_row_bytes(), KVD);
        kernels::QuantizeKvRow(cache_->v_type(), v_.data() + t * KVD,
                               cache_->VRows(l, b.seq[t]) + pos * cache_->v_row_bytes(), KVD);
        continue;
      }
      uint16_t* kc = cache_->K(l, b.seq[t]) + static_cast<size_t>(b.pos[t]) * KVD;
      uint16_t* vc = cache_->V(l, b.seq[t]) + static_cast<size_t>(b.pos[t]) * KVD;
      for (int64_t i = 0; i < KVD; ++i) {
        kc[i] = f32_to_fp16(k_[t * KVD + i]);
        vc[i] = f32_to_fp16(v_[t * KVD + i]);
      }
    }
    Attention(b, l);
    kernels::MatMul(L.wo.data, L.wo.type, H, QD, attn_.data(), n, proj_.data(), pool_,
                    &mm_scratch_);
    for (int t = 0; t < n; ++t) kernels::Add(x + t * H, proj_.data() + t * H, H);

    // Feed-forward block (SwiGLU).
    for (int t = 0; t < n; ++t)
      kernels::RmsNorm(x + t * H, L.ffn_norm.data(), xn_.data() + t * H, H, c.rms_eps);
    kernels::MatMul(L.w_gate.data, L.w_gate.type, FF, H, xn_.data(), n, gate_.data(), pool_,
                    &mm_scratch_);
    kernels::MatMul(L.w_up.data, L.w_up.type, FF, H, xn_.data(), n, up_.data(), pool_,
                    &mm_scratch_);
    kernels::SiluMul(gate_.data(), up_.data(), static_cast<int64_t>(nz) * FF);
    kernels::MatMul(L.w_down.data, L.w_down.type, H, FF, gate_.data(), n, proj_.data(), pool_,
                    &mm_scratch_);
    for (int t = 0; t < n; ++t) kernels::Add(x + t * H, proj_.data() + t * H, H);
  }

  // Advance the sequences now that every layer holds their new positions.
  for (int t = 0; t < n; ++t)
    cache_->set_length(b.seq[t], std::max(cache_->length(b.seq[t]), b.pos[t] + 1));

  if (!model_.has_head()) {
    out->assign(x, x + nz * H);
    return Status::Ok();
  }
  // Final norm and output head, only for the tokens that want logits.
  int n_out = 0;
  for (int t = 0; t < n; ++t) {
    if (!b.output[t]) continue;
    kernels::RmsNorm(x + t * H, model_.output_norm().data(), xn_.data() + n_out * H, H, c.rms_eps);
    ++n_out;
  }
  const int64_t rows = head_rows();
  out->resize(static_cast<size_t>(n_out * rows));
  if (n_out > 0)
    kernels::MatMul(model_.output().data, model_.output().type, rows, H, xn_.data(), n_out,
                    out->data(), pool_, &mm_scratch_);
  return Status::Ok();
}

Status Forward::set_head_rows(int64_t rows) {
  const int64_t nv = model_.config().n_vocab;
  if (rows < 0 || rows > nv || rows % 64 != 0)
    return Errorf(
        "head rows must be a multiple of 64 from 0 to the vocabulary size %lld (got %lld)",
        static_cast<long long>(nv), static_cast<long long>(rows));
  head_rows_ = rows;
  return Status::Ok();
}

int64_t Forward::head_rows() const {
  const int64_t nv = model_.config().n_vocab;
  return head_rows_ > 0 && head_rows_ < nv ? head_rows_ : nv;
}

void Forward::RunTasks(const std::function<void(int ith, int nth)>& work) {
  if (pool_) pool_->Run(work);
  else work(0, 1);
}

Forward::AttentionShape Forward::AttentionShapeOf() const {
  const ModelConfig& c = model_.config();
  AttentionShape s;
  s.QD = c.q_dim();
  s.KVD = c.kv_dim();
  s.hd = c.head_dim;
  s.group = c.n_heads / c.n_kv_heads;
  s.scale = 1.0f / std::sqrt(static_cast<float>(s.hd));
  s.nth = pool_ ? pool_->size() : 1;
  return s;
}

void Forward::Attention(const Batch& b, int l) {
  const ModelConfig& c = model_.config();
  const int n = b.size();
  const AttentionShape sh = AttentionShapeOf();
  if (cache_->quantized()) {
    AttentionQuantized(b, l);
    return;
  }
  if (n >= kernels::kTiledAttentionMinBatch && kernels::HasTiledAttention(sh.hd)) {
    AttentionTiled(b, l);
    return;
  }
  if (AttentionSplit(b, l) == n) return;
  Grow(scores_, static_cast<size_t>(sh.nth) * cache_->n_ctx());
  // The other rows: one task per (token, pair of query heads sharing a KV head): the kernel
  // reads each K / V row once for both heads. Each thread owns a scores row.
  const int pairs = (sh.group + 1) / 2;  // per KV head
  const int64_t per_token = static_cast<int64_t>(c.n_kv_heads) * pairs;
  const int64_t tasks = static_cast<int64_t>(n) * per_token;
  auto work = [&](int ith, int nthr) {
    float* scratch = scores_.data() + static_cast<size_t>(ith) * cache_->n_ctx();
    for (int64_t task = ith; task < tasks; task += nthr) {
      const int t = static_cast<int>(task / per_token);
      if (SplitRow(b, t)) continue;
      const int kvh = static_cast<int>(task % per_token) / pairs;
      const int h = kvh * sh.group + 2 * (static_cast<int>(task % per_token) % pairs);
      const int nh = std::min(2, kvh * sh.group + sh.group - h);
      const int64_t n_kv = b.pos[t] + 1;  // causal: positions 0..pos of this sequence
      kernels::Attention(q_.data() + t * sh.QD + static_cast<int64_t>(h) * sh.hd,
                         cache_->K(l, b.seq[t]) + static_cast<int64_t>(kvh) * sh.hd,
                         cache_->V(l, b.seq[t]) + static_cast<int64_t>(kvh) * sh.hd, n_kv, sh.KVD,
                         nh, 1, sh.hd, sh.scale,
                         attn_.data() + t * sh.QD + static_cast<int64_t>(h) * sh.hd, scratch);
    }
  };
  RunTasks(work);
}

// A quantized K or V cache: one task per (token, KV head), covering the query heads that
// share it (kernels::AttentionKv reads each of the head's rows once for all of them).
void Forward::AttentionQuantized(const Batch& b, int l) {
  const ModelConfig& c = model_.config();
  const int n = b.size();
  const AttentionShape sh = AttentionShapeOf();
  if (AttentionSplit(b, l) == n) return;
  const int per_call = std::min(sh.group, kernels::kMaxAttnHeads);
  const size_t per_thread = static_cast<size_t>(per_call) * cache_->n_ctx();
  Grow(scores_, static_cast<size_t>(sh.nth) * per_thread);
  const size_t k_head = RowBytesUnchecked(cache_->k_type(), sh.hd);
  const size_t v_head = RowBytesUnchecked(cache_->v_type(), sh.hd);
  const int64_t tasks = static_cast<int64_t>(n) * c.n_kv_heads;
  auto work = [&](int ith, int nthr) {
    float* scratch = scores_.data() + static_cast<size_t>(ith) * per_thread;
    for (int64_t task = ith; task < tasks; task += nthr) {
      const int t = static_cast<int>(task / c.n_kv_heads);
      if (SplitRow(b, t)) continue;
      const int kvh = static_cast<int>(task % c.n_kv_heads);
      kernels::KvAttention a;
      a.k = cache_->KRows(l, b.seq[t]) + kvh * k_head;
      a.k_type = cache_->k_type();
      a.k_row_bytes = cache_->k_row_bytes();
      a.v = cache_->VRows(l, b.seq[t]) + kvh * v_head;
      a.v_type = cache_->v_type();
      a.v_row_bytes = cache_->v_row_bytes();
      a.n_kv = b.pos[t] + 1;  // causal: positions 0..pos of this sequence
      a.head_dim = sh.hd;
      a.scale = sh.scale;
      for (int h0 = 0; h0 < sh.group; h0 += per_call) {
        a.n_heads = std::min(per_call, sh.group - h0);
        const int64_t off = t * sh.QD + static_cast<int64_t>(kvh * sh.group + h0) * sh.hd;
        kernels::AttentionKv(a, q_.data() + off, attn_.data() + off, scratch);
      }
    }
  };
  RunTasks(work);
}

// Batches of >= 64 tokens, as llama.cpp: its tiled attention order (kernels::AttentionTiled).
// Each row's result depends only on its own query and visible keys, so rows are grouped
// freely: runs of consecutive rows of one sequence, up to kTiledAttentionRows per chunk; one
// task per (chunk, head).
void Forward::AttentionTiled(const Batch& b, int l) {
  const ModelConfig& c = model_.config();
  const int n = b.size();
  const AttentionShape sh = AttentionShapeOf();
  const int64_t per_thread = kernels::AttentionTiledScratch(sh.hd);
  if (scores_.size() < static_cast<size_t>(sh.nth * per_thread))
    scores_.resize(sh.nth * per_thread);
  if (n_vis_.size() < static_cast<size_t>(n)) n_vis_.resize(n);
  chunks_.clear();
  for (int t = 0; t < n; ++t) {
    n_vis_[t] = b.pos[t] + 1;  // causal: positions 0..pos of this sequence
    if (t == 0 || b.seq[t] != b.seq[t - 1] || t - chunks_.back() == kernels::kTiledAttentionRows)
      chunks_.push_back(t);
  }
  chunks_.push_back(n);
  const int64_t n_chunks = static_cast<int64_t>(chunks_.size()) - 1;
  const int64_t tasks = n_chunks * c.n_heads;
  auto work = [&](int ith, int nthr) {
    float* scratch = scores_.data() + static_cast<size_t>(ith) * per_thread;
    for (int64_t task = ith; task < tasks; task += nthr) {
      const int64_t ch = task / c.n_heads;
      const int h = static_cast<int>(task % c.n_heads);
      const int t0 = chunks_[ch], rows = chunks_[ch + 1] - t0;
      const int64_t col = static_cast<int64_t>(h / sh.group) * sh.hd;
      kernels::AttentionTiled(
          q_.data() + t0 * sh.QD + static_cast<int64_t>(h) * sh.hd, sh.QD, n_vis_.data() + t0, rows,
          cache_->K(l, b.seq[t0]) + col, cache_->V(l, b.seq[t0]) + col, sh.KVD, sh.hd, sh.scale,
          attn_.data() + t0 * sh.QD + static_cast<int64_t>(h) * sh.hd, sh.QD, scratch);
    }
  };
  RunTasks(work);
}

}  // namespace strata
