// A loaded model ready to generate: weights, tokenizer, KV cache, thread pool and the
// prefill/decode loop with sampling and stop conditions.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "base/status.h"
#include "base/thread_pool.h"
#include "model/forward.h"
#include "model/kv_cache.h"
#include "model/weights.h"
#include "sampler/sampler.h"
#include "tokenizer/tokenizer.h"

namespace strata {

struct EngineOptions {
  std::string model_path;
  int n_ctx = 4096;   // KV cache positions per sequence (never the model's training maximum)
  int n_seq = 1;      // KV cache slots
  int threads = 0;    // 0: all cores
  int n_batch = 512;  // prompt tokens per forward step
  DType cache_type_k = DType::F16;  // KV cache types (KvCache: F16, Q8_0, Q4_0)
  DType cache_type_v = DType::F16;
  // Keep the streamed weights in the file mapping (--mmap) instead of copying them to huge
  // pages (Model::CopyToHugePages); load_progress: show the copy's progress.
  bool mmap = false;
  bool load_progress = false;
};

struct GenerateOptions {
  int max_tokens = 256;
  SamplerParams sampler;
  int seq = 0;  // KV cache slot
};

struct GenerateResult {
  std::vector<int32_t> prompt_tokens;
  std::vector<int32_t> tokens;  // generated ids (an end-of-generation token included)
  std::string text;             // detokenized generated text (special tokens not rendered)
  std::string stop_reason;  // "eog", "length" (max tokens), "context" (context full), "cancelled"
  double prompt_ms = 0;
  double gen_ms = 0;
};

class Engine {
 public:
  static Result<std::unique_ptr<Engine>> Load(const EngineOptions& opts);

  const Model& model() const { return *model_; }
  const Tokenizer& tokenizer() const { return *tokenizer_; }
  KvCache& cache() { return cache_; }
  ThreadPool& pool() { return *pool_; }
  int n_ctx() const { return cache_.n_ctx(); }

  // Tokenizes like llama.cpp's CLI: BOS when the model asks for it, special-token text parsed.
  std::vector<int32_t> Tokenize(const std::string& text, bool add_special = true,
                                bool parse_special = true) const;

  // Evaluates `tokens` at the end of sequence `seq`: they take positions length(seq),
  // length(seq) + 1, ... of its KV cache (error when they do not fit n_ctx). Returns the logits
  // [n_vocab] of the last one.
  Status Eval(const std::vector<int32_t>& tokens, int seq, std::vector<float>* last_logits);
  // As Eval, but returns the logits of every token from index first_output on:
  // [tokens.size() - first_output, n_vocab], in token order (perplexity scores them all).
  // first_output in [0, tokens.size()); `logits` may be null.
  Status EvalOutputs(const std::vector<int32_t>& tokens, int seq, int first_output,
                     std::vector<float>* logits);

  // Generates from `prompt` (ids) in slot opts.seq, which is cleared first. on_token, when
  // given, sees each generated id and the text it completes; returning false cancels.
  Result<GenerateResult> Generate(
      const std::vector<int32_t>& prompt, const GenerateOptions& opts,
      const std::function<bool(int32_t id, const std::string& piece)>& on_token = nullptr);

 private:
  Engine(std::unique_ptr<Model> model, std::unique_ptr<Tokenizer> tok, KvCache cache, int threads,
         int n_batch);

  std::unique_ptr<Model> model_;
  std::unique_ptr<Tokenizer> tokenizer_;
  KvCache cache_;
  std::unique_ptr<ThreadPool> pool_;
  std::unique_ptr<Forward> forward_;
  int n_batch_;
  Batch batch_;
  std::vector<float> out_;
};

}  // namespace strata
