// Speculative decoding (docs/speculative.md): a drafter proposes the next few tokens of a
// sequence cheaply (a small draft model, or a lookup of the sequence's own earlier n-grams);
// the target model evaluates the last sampled token and every drafted one in one batched step,
// and standard speculative sampling keeps the longest prefix the target agrees with plus one
// token of its own. Greedy output is the target's own; sampled output keeps the target's
// distribution (accept a drafted x with probability min(1, p(x)/q(x)), else draw from
// norm(max(0, p - q))). Rejected tokens' keys/values are dropped from both caches by the next
// step (PrepareKv truncates a sequence to its first position in a batch).
#pragma once

#include <cstdint>
#include <memory>
#include <utility>
#include <vector>

#include "base/status.h"
#include "base/thread_pool.h"
#include "model/forward.h"
#include "model/kv_cache.h"
#include "model/weights.h"
#include "sampler/sampler.h"

namespace strata {

struct SpecOptions {
  int draft_max = 16;   // tokens drafted at most per step (--draft-max)
  int draft_min = 0;    // a shorter draft is not verified (--draft-min)
  float p_min = 0.75f;  // the draft model stops below this top probability (--draft-p-min)
  int ngram_n = 3;      // n-gram lookup: the longest suffix looked up (--spec-ngram-size-n)
  // Speculation runs only while at most this many sequences generate (a fuller batch already
  // uses the weights it reads; drafting would cost throughput). 0: slots / 2, at least 1.
  int max_seqs = 0;
};

// A sparse distribution: (token id, probability).
using SparseDist = std::vector<std::pair<int32_t, double>>;

// Probability of `id` in `d` (0 when absent).
double ProbOf(const SparseDist& d, int32_t id);
// Whether drafted token x is accepted: u < min(1, p(x) / q(x)), u uniform in [0, 1).
bool AcceptDraft(double p_x, double q_x, double u);
// The token drawn from norm(max(0, p - q)) with uniform u in [0, 1); when that mass is zero
// (p == q), from p. Ties and rounding: the last token with mass.
int32_t ResampleResidual(const SparseDist& p, const SparseDist& q, double u);

// Verifies draft[0, k) against the target's logits rows [k + 1, n_vocab] (row j follows the
// sequence up to draft[j - 1]; row 0 follows the last sampled token) with `sampler`, whose
// distribution is the target's (penalties, filters, temperature; greedy: the argmax). The
// draft is deterministic (q is one-hot on each drafted token). Appends the emitted tokens to
// *out: the accepted prefix of the draft, then a resampled token or, when all were accepted,
// one sampled from the last row (1 to k + 1 tokens). The sampler accepts each emitted token.
void VerifyDraft(Sampler& sampler, const float* logits, int32_t n_vocab,
                 const std::vector<int32_t>& draft, std::vector<int32_t>* out);

// Prompt lookup: the tokens that followed the latest earlier occurrence of the longest suffix
// of `seq` (n = n_max down to 1) found in it, at most `max` of them (none when no suffix
// recurs).
std::vector<int32_t> NgramLookup(const std::vector<int32_t>& seq, int n_max, int max);

// One sequence to draft for: its KV slot, the tokens evaluated so far, the last sampled one
// (not yet evaluated), and the most tokens to draft.
struct DraftJob {
  int slot = 0;
  const std::vector<int32_t>* context = nullptr;
  int32_t last = -1;
  int max = 0;
  std::vector<int32_t> out;  // the draft
};

class Drafter {
 public:
  virtual ~Drafter() = default;
  // Fills each job's `out` (possibly empty).
  virtual Status Draft(std::vector<DraftJob>* jobs) = 0;
  virtual const char* name() const = 0;
};

// Draft-free: NgramLookup over the sequence's prompt and output.
class NgramDrafter : public Drafter {
 public:
  explicit NgramDrafter(int n_max) : n_max_(n_max) {}
  Status Draft(std::vector<DraftJob>* jobs) override;
  const char* name() const override { return "ngram"; }

 private:
  int n_max_;
};

// A draft model with its own KV cache (one slot per target slot): greedy drafting, stopping
// when its best token's probability falls below p_min. The draft's cache follows each
// sequence by common prefix, so rejected drafts and reused prompts cost nothing extra.
class ModelDrafter : public Drafter {
 public:
  // The draft must hold every layer and the head, with the target's vocabulary size.
  // vocab > 0 (--draft-vocab): the draft proposes only ids [0, vocab), scoring only those rows
  // of its output head (a multiple of 64, at most the vocabulary size); 0: every id.
  static Result<std::unique_ptr<ModelDrafter>> Create(std::unique_ptr<Model> draft, int n_seq,
                                                      int n_ctx, int n_batch, float p_min,
                                                      ThreadPool* pool, int64_t vocab = 0);
  Status Draft(std::vector<DraftJob>* jobs) override;
  const char* name() const override { return "draft-model"; }
  const Model& model() const { return *model_; }

 private:
  ModelDrafter(std::unique_ptr<Model> model, KvCache cache, int n_batch, float p_min,
               ThreadPool* pool);
  // Runs the jobs' tokens not yet in the draft cache (each job's context and last token, into
  // (*want)[k]); rows_ gets each job's logits row of its last token.
  Status CatchUp(std::vector<DraftJob>* jobs, std::vector<std::vector<int32_t>>* want);
  void Forget(const std::vector<DraftJob>& jobs);

  std::unique_ptr<Model> model_;
  KvCache cache_;
  Forward forward_;
  int n_batch_;
  float p_min_;
  std::vector<std::vector<int32_t>> held_;  // per slot: the tokens in the draft cache
  std::vector<float> logits_;
  std::vector<float> rows_;  // [jobs, forward_.head_rows()]: each job's latest logits row
};

}  // namespace strata
