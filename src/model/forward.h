// The transformer forward pass over a model's layer range, for a batch of tokens that may
// belong to several sequences at different positions (prefill, decode, continuous batching
// and pipeline stages all run this same code).
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include "base/status.h"
#include "base/thread_pool.h"
#include "base/token_batch.h"
#include "model/kv_cache.h"
#include "model/weights.h"

namespace strata {

// A batch for Forward: tokens (or, mid-pipeline, hidden rows) at their positions and slots.
struct Batch : TokenBatch {};

class Forward {
 public:
  Forward(const Model& model, KvCache* cache, ThreadPool* pool);

  // Runs `batch` through layers [first, last) of the model.
  //   in_hidden: [n, hidden] input activations when the range starts after layer 0
  //              (ignored otherwise: the tokens are embedded).
  //   out: when the range ends with the output head: logits [n_out, n_vocab] for the tokens
  //        flagged in batch.output, in batch order; otherwise the hidden states [n, hidden].
  // Each sequence's tokens must continue it: positions length(seq), length(seq)+1, ...
  // On success the cache lengths advance.
  Status Run(const Batch& batch, const float* in_hidden, std::vector<float>* out);

  // The output head scores only token ids [0, rows) (0: every id, the default): logits rows are
  // then `rows` wide. A speculative draft's smaller head (--draft-vocab): BPE vocabularies put
  // frequent tokens first. rows: a multiple of 64 (whole groups of repacked weight rows), at
  // most the vocabulary size; otherwise an error and nothing changes.
  Status set_head_rows(int64_t rows);
  int64_t head_rows() const;

 private:
  Status Validate(const Batch& batch) const;
  void Attention(const Batch& batch, int il);
  void AttentionTiled(const Batch& batch, int il);      // batches of >= 64 tokens
  void AttentionQuantized(const Batch& batch, int il);  // a Q8_0 / Q4_0 K or V cache
  // Rows that see >= kernels::kSplitKvMinKv positions (SplitRow), any cache type: split-KV
  // attention (attention_split.cc). Returns how many rows it handled.
  int AttentionSplit(const Batch& batch, int il);
  void AttentionSplitRows(const Batch& batch, int il, int r0, int r1);  // rows [r0, r1)
  static bool SplitRow(const Batch& batch, int t);
  // What both attention paths derive from the config: q / kv row sizes, head size, query heads
  // per KV head, 1/sqrt(head_dim), threads.
  struct AttentionShape {
    int64_t QD, KVD;
    int hd, group;
    float scale;
    int nth;
  };
  AttentionShape AttentionShapeOf() const;
  // work(ith, nth) on the pool's threads, or (0, 1) on this one without a pool.
  void RunTasks(const std::function<void(int ith, int nth)>& work);

  const Model& model_;
  KvCache* cache_;
  ThreadPool* pool_;

  // Scratch reused between calls (grown, never shrunk).
  std::vector<float> x_, xn_, q_, k_, v_, attn_, proj_, gate_, up_;
  std::vector<float> scores_;    // [n_threads, n_ctx] (or the tiled kernel's scratch)
  std::vector<int32_t> n_vis_;   // [n] visible keys per batch row (tiled attention)
  std::vector<int32_t> chunks_;  // [n_chunks + 1] row starts of the tiled attention's chunks
  // Split-KV attention: the rows, each row's first task (+ the total), each task's row, the
  // chunks left per row, partials [tasks, n_heads, stride] and per-thread scratch.
  std::vector<int32_t> split_rows_;
  std::vector<int64_t> split_first_;
  std::vector<int32_t> task_row_;
  std::vector<int32_t> split_left_;
  std::vector<float> partials_, split_scratch_;
  std::vector<uint8_t> mm_scratch_;
  int64_t head_rows_ = 0;
};

}  // namespace strata
