// The transformer forward pass over a model's layer range, for a batch of tokens that may
// belong to several sequences at different positions (prefill, decode, continuous batching
// and pipeline stages all run this same code).
#pragma once

#include <cstdint>
#include <vector>

#include "base/status.h"
#include "base/thread_pool.h"
#include "model/kv_cache.h"
#include "model/weights.h"

namespace strata {

struct Batch {
  std::vector<int32_t> tokens;  // [n] token ids (used when the range starts at layer 0)
  std::vector<int32_t> pos;     // [n] position of each token in its sequence
  std::vector<int32_t> seq;     // [n] KV cache slot of each token
  std::vector<uint8_t> output;  // [n] 1: produce logits for this token (range with the head)

  int size() const { return static_cast<int>(pos.size()); }
  void Add(int32_t token, int32_t position, int32_t seq_id, bool want_output) {
    tokens.push_back(token);
    pos.push_back(position);
    seq.push_back(seq_id);
    output.push_back(want_output ? 1 : 0);
  }
  void Clear() { tokens.clear(); pos.clear(); seq.clear(); output.clear(); }
};

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

 private:
  Status Validate(const Batch& batch) const;
  void Attention(const Batch& batch, int il);
  void AttentionTiled(const Batch& batch, int il);  // batches of >= 64 tokens
  // What both attention paths derive from the config: q / kv row sizes, head size, query heads
  // per KV head, 1/sqrt(head_dim), threads.
  struct AttentionShape {
    int64_t QD, KVD;
    int hd, group;
    float scale;
    int nth;
  };
  AttentionShape AttentionShapeOf() const;

  const Model& model_;
  KvCache* cache_;
  ThreadPool* pool_;

  // Scratch reused between calls (grown, never shrunk).
  std::vector<float> x_, xn_, q_, k_, v_, attn_, proj_, gate_, up_;
  std::vector<float> scores_;      // [n_threads, n_ctx] (or the tiled kernel's scratch)
  std::vector<int32_t> n_vis_;     // [n] visible keys per batch row (tiled attention)
  std::vector<int32_t> chunks_;    // [n_chunks + 1] row starts of the tiled attention's chunks
  std::vector<uint8_t> mm_scratch_;
};

}  // namespace strata
