// The Scheduler's "step backend": what runs one batched model step and samples its output
// rows. A LocalBackend runs the whole model in-process; a pipeline head (net/pipeline_head.h)
// runs its layer range locally and the rest on remote stages, the last of which samples.
// Sampling happens where the logits are, so both use SlotSamplers with the same per-row
// instructions (SampleSpec) and produce identical tokens.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "base/status.h"
#include "base/thread_pool.h"
#include "model/forward.h"
#include "model/kv_cache.h"
#include "model/weights.h"
#include "sampler/sampler.h"

namespace strata {

// How to sample one output row (a token flagged in Batch::output).
struct SampleSpec {
  bool reset = false;    // a new request in this slot: new sampler with `params`
  SamplerParams params;  // used when reset
  // Tokens to Accept before sampling (after a reset: the prompt). An entry below -1 is no
  // token but SkipSamplesEntry(n): advance the random stream as n Sample() calls would (a
  // continuation of earlier output, see SchedRequestParams::n_continued). Encoded in the list
  // so that it travels through the stage protocol unchanged.
  std::vector<int32_t> accept;
  // Tokens allowed for this row (bit id set; null: all): a grammar constraint's mask or
  // ignore_eos. In-process only (not sent to pipeline stages).
  std::shared_ptr<const std::vector<uint64_t>> allow;
  // Log-probabilities of the sampled token wanted: -1 none, k >= 0 with the k most likely.
  // Local backend only (not carried by the stage protocol).
  int32_t top_logprobs = -1;
  // Speculative decoding (runtime/speculative.h): tokens drafted after this row's token. The
  // batch then holds them right after it, each flagged, each with a spec of its own marked
  // `drafted` (placeholders); the step returns the emitted tokens in these rows, -1 in the
  // rows after them. Also carried to a pipeline's last stage, which verifies (no allow mask,
  // no logprobs with a draft).
  std::vector<int32_t> draft;
  bool drafted = false;
};

// The `accept` entry that skips n >= 1 samples, and its inverse (0 for a token id).
inline int32_t SkipSamplesEntry(int32_t n) { return -1 - n; }
inline int32_t SkippedSamples(int32_t entry) { return entry < -1 ? -1 - entry : 0; }

// Copy the first n KV positions of slot src into slot dst (dst's length becomes n).
struct KvCopy {
  int32_t src = 0, dst = 0, n = 0;
};

struct Step {
  uint64_t id = 0;
  Batch batch;
  std::vector<KvCopy> copies;       // applied first, in order
  std::vector<SampleSpec> samples;  // one per flagged token, in batch order
};

struct StepResult {
  uint64_t id = 0;
  Status status;
  // The failure means some stage lacks KV positions the batch continues (it restarted and
  // lost its cache): re-running the affected sequences from position 0 fixes it.
  bool stale = false;
  // The failure is the pipeline's (a stage died, or is unreachable), not the request's.
  bool pipeline = false;
  // The pipeline may come back within the backend's grace period: re-running the affected
  // sequences from position 0 with what they generated so far continues them unchanged.
  bool retry = false;
  std::vector<int32_t> tokens;  // one sampled id per flagged token
  // Per flagged token when any spec asked (id -1 in rows that did not); else empty.
  std::vector<TokenLogprob> logprobs;
};

class StepBackend {
 public:
  virtual ~StepBackend() = default;
  virtual int n_seq() const = 0;
  virtual int n_ctx() const = 0;
  // Steps that may be in flight at once (1: each step completes before the next starts).
  virtual int depth() const = 0;
  // Stages that work on a step one after the other (a pipeline's length; 1 in-process). With
  // depth() > 1 the scheduler splits the running sequences into this many micro-batches (at
  // most depth()): one per stage keeps every stage busy, and no more keeps each micro-batch as
  // large as possible, so every stage reads its weights once for as many tokens as it can.
  virtual int stages() const { return 1; }
  // Queues a step. Its result comes from Next(), in submission order.
  virtual void Submit(Step step) = 0;
  // Blocks for the result of the oldest submitted step not yet returned.
  virtual StepResult Next() = 0;
};

// Makes `cache` ready for `batch`: applies `copies`, then for each sequence of the batch
// whose first position p is below the cache length, truncates to p (the driver rolled back or
// reused a prefix); a p beyond the length is an error with *stale = true (positions lost).
Status PrepareKv(KvCache& cache, const Batch& batch, const std::vector<KvCopy>& copies,
                 bool* stale);

// One sampler per KV slot, driven by SampleSpecs.
class SlotSamplers {
 public:
  explicit SlotSamplers(int n_seq) : samplers_(static_cast<size_t>(n_seq)) {}
  // Samples row `logits[n_vocab]` of sequence `seq` and accepts the result. Error (with
  // *stale = true) when the slot has no sampler and the spec does not reset it.
  Result<int32_t> Sample(int seq, const SampleSpec& spec, const float* logits, int32_t n_vocab,
                         bool* stale);
  // Verifies spec.draft against rows logits[draft.size() + 1, n_vocab] (VerifyDraft):
  // *out gets the emitted tokens.
  Status Verify(int seq, const SampleSpec& spec, const float* logits, int32_t n_vocab,
                std::vector<int32_t>* out, bool* stale);
  void Clear(int seq);

 private:
  // The slot's sampler after spec's reset and accepted tokens.
  Result<Sampler*> Prepare(int seq, const SampleSpec& spec, bool* stale);
  std::vector<std::unique_ptr<Sampler>> samplers_;
  std::vector<float> masked_;  // a row with the disallowed tokens at -inf
};

// Samples every flagged row of `logits` ([n_out, n_vocab]) with `specs`. `tokens_known`: the
// batch holds its token ids (false on a pipeline stage after the head, whose batch carries
// hidden states: a draft's rows are then not checked against its ids).
Status SampleRows(SlotSamplers& samplers, const Batch& batch, const std::vector<SampleSpec>& specs,
                  const std::vector<float>& logits, int32_t n_vocab, std::vector<int32_t>* tokens,
                  bool* stale, std::vector<TokenLogprob>* logprobs = nullptr,
                  bool tokens_known = true);

// The whole model in this process: runs each step synchronously inside Next().
class LocalBackend : public StepBackend {
 public:
  // The model must hold every layer and the head. Clears every cache slot.
  LocalBackend(const Model& model, KvCache* cache, ThreadPool* pool);
  int n_seq() const override { return cache_->n_seq(); }
  int n_ctx() const override { return cache_->n_ctx(); }
  int depth() const override { return 1; }
  void Submit(Step step) override;
  StepResult Next() override;

 private:
  const Model& model_;
  KvCache* cache_;
  Forward forward_;
  SlotSamplers samplers_;
  std::vector<Step> pending_;
  std::vector<float> logits_;
};

}  // namespace strata
