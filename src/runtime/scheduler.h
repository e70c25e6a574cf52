// Continuous batching: one loop thread owns a Forward over the engine's model and KV cache
// (one cache slot per concurrently running sequence). Every step batches one decode token
// for each running sequence plus prompt chunks of newly admitted ones, and runs the model
// once, so the weights are read once per step for all sequences. Requests wait in a bounded
// queue for a free slot. A finished sequence's tokens stay in its slot: a later request whose
// prompt shares a prefix with them reuses that KV (the prompt cache).
// The model step itself runs behind a StepBackend (runtime/step.h): in-process for a single
// node, or a pipeline of stages whose last one samples. A backend with depth() > 1 gets the
// running sequences split into micro-batches, one per stage (StepBackend::stages()), at most
// depth(), all in flight at once.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "grammar/matcher.h"
#include "model/forward.h"
#include "runtime/engine.h"
#include "runtime/speculative.h"
#include "runtime/step.h"
#include "sampler/sampler.h"

namespace strata {

struct SchedulerOptions {
  int n_batch = 512;   // most tokens evaluated per step (decode tokens + prompt chunks)
  int max_queue = 64;  // requests that may wait for a slot; more are refused (kQueueFull)
  bool prompt_cache = true;
  // Speculative decoding (runtime/speculative.h): null: off. Used by the loop thread only (a
  // pipeline head drafts while the other micro-batches are on the remote stages).
  std::shared_ptr<Drafter> drafter;
  SpecOptions spec;
};

struct SchedRequestParams {
  std::vector<int32_t> prompt;  // token ids, BOS included when wanted
  // A continuation: the last n_continued ids of `prompt` were generated earlier (by this or
  // another node) and generation goes on as if this request had produced them: their text
  // passes the stop-string check without being reported (SchedUpdate::continued_text), the
  // sampler counts them for the penalties and its random stream skips their draws. They count
  // neither as prompt tokens in the updates nor against max_tokens. Must be < prompt.size().
  int n_continued = 0;
  int max_tokens = 256;  // generated tokens at most (an end-of-generation token counts)
  SamplerParams sampler;
  // Generation stops before the first occurrence of any of these; text that could still
  // become one of them is held back, so a stop string never shows, not even partly.
  std::vector<std::string> stop;
  // Zero: none. Otherwise the request ends with finish_reason "timeout" at this time.
  std::chrono::steady_clock::time_point deadline{};
  // Constrained decoding (docs/constrained-decoding.md): only tokens the matcher allows are
  // sampled, and the generation stops once the grammar can go no further. Needs a backend
  // that samples in this process (masks do not travel to pipeline stages).
  std::shared_ptr<grammar::Matcher> constraint;
  // The output starts inside a thinking block (the prompt opened <think>): the constraint
  // applies from the token after the one that closes it (text "</think>").
  bool in_reasoning = false;
  // Thinking tokens allowed (in_reasoning only; -1: unlimited). When spent, think_close (an
  // optional message's tokens, then the closing token) is generated in place of samples.
  int thinking_budget = -1;
  std::vector<int32_t> think_close;
  bool ignore_eos = false;  // end-of-generation tokens are never sampled (in-process backend)
  // Log-probabilities of each sampled token (SchedUpdate::logprob): -1 none, k >= 0 with the
  // k most likely. In-process backend only.
  int top_logprobs = -1;
};

// One report from the loop thread about a request: a sampled token with the text that
// became final with it (possibly empty), or the end.
struct SchedUpdate {
  std::string text;  // new text, safe to show
  // In the first update of a continuation: the text the continued tokens made final (not to
  // be shown again; a reasoning splitter must still see it before `text`).
  std::string continued_text;
  int32_t token = -1;    // the sampled id (-1 in a final update that samples nothing)
  TokenLogprob logprob;  // of `token`, when SchedRequestParams::top_logprobs >= 0
  int choice = 0;        // free for the receiver (the node's choice index)
  int n_prompt = 0;      // prompt tokens (continued ones excluded)
  int n_cached = 0;      // prompt tokens whose KV came from the prompt cache
  int n_generated = 0;   // tokens sampled so far
  int n_thinking = 0;    // of which inside the thinking block (in_reasoning requests)
  bool done = false;
  // When done: "stop" (end-of-generation token or stop string), "length" (max_tokens or
  // the context is full), "cancelled", "timeout" or "error" (see `error`).
  std::string finish_reason;
  std::string error;
  // When finish_reason is "error": a machine-readable code. "pipeline_stage_failed" (a stage
  // of the pipeline died and did not come back in time) and "internal_error" are failures of
  // the node, not of the request: another node may serve it.
  std::string error_code;
};

// Handle of a submitted request; Cancel() may be called from any thread. The loop notices
// it before the next step and finishes the request with finish_reason "cancelled".
class SchedRequest {
 public:
  void Cancel() { cancelled_.store(true, std::memory_order_relaxed); }
  bool cancelled() const { return cancelled_.load(std::memory_order_relaxed); }
  uint64_t id() const { return id_; }

 private:
  friend class Scheduler;
  uint64_t id_ = 0;
  SchedRequestParams params_;
  std::function<void(const SchedUpdate&)> on_update_;
  std::atomic<bool> cancelled_{false};
};

enum class SubmitCode { kOk, kQueueFull, kInvalid, kStopped };

struct SubmitResult {
  SubmitCode code = SubmitCode::kOk;
  std::string message;  // why, when not kOk
  std::shared_ptr<SchedRequest> request;
};

struct SchedulerStats {
  int running = 0;  // requests holding a slot
  int waiting = 0;  // requests queued for a slot
  int slots_total = 0;
  int kv_used = 0;             // positions holding keys/values (cached prompts included)
  int kv_total = 0;            // slots * context
  uint64_t prompt_tokens = 0;  // prompt tokens of admitted requests
  uint64_t cached_tokens = 0;  // of which reused from the prompt cache
  // Admitted requests whose prompt needed evaluating beyond its last token (not wholly
  // reused from the prompt cache or a running sequence's keys/values).
  uint64_t prefills = 0;
  uint64_t evaluated_tokens = 0;  // tokens run through the model (prompt + decode)
  uint64_t generated_tokens = 0;  // tokens sampled
  uint64_t steps = 0;             // model steps (micro-batches) completed
  uint64_t step_errors = 0;       // steps that failed
  uint64_t reprefills = 0;        // requests re-run from position 0 after a stage lost its KV
  uint64_t replays = 0;           // sequences replayed into a re-formed pipeline (prompt + output)
  uint64_t replayed_tokens = 0;   // tokens re-evaluated by those replays
  double replay_seconds = 0;      // from a sequence's failure to its next token, summed
  uint64_t requests_done = 0;
  // Speculative decoding: tokens drafted and of them accepted; sequence steps that verified a
  // draft; steps where it was off because more sequences ran than SpecOptions::max_seqs; time
  // spent drafting.
  uint64_t spec_drafted = 0;
  uint64_t spec_accepted = 0;
  uint64_t spec_verified = 0;
  uint64_t spec_paused = 0;
  double spec_draft_seconds = 0;
};

class Scheduler {
 public:
  // Uses the engine's model, tokenizer, KV cache (its slots are the parallel sequences) and
  // thread pool. While the scheduler lives, nobody else may use the engine's cache or pool.
  Scheduler(Engine* engine, const SchedulerOptions& opts);
  // Runs steps through `backend` (its slots are the parallel sequences); `tok` detokenizes.
  Scheduler(const Tokenizer& tok, std::unique_ptr<StepBackend> backend,
            const SchedulerOptions& opts);
  ~Scheduler();  // Stop()
  Scheduler(const Scheduler&) = delete;
  Scheduler& operator=(const Scheduler&) = delete;

  // Queues a request. on_update runs on the loop thread for every sampled token and once
  // with done = true (also when cancelled or failed, never after that); it must be quick and
  // must not call Submit or Stop.
  SubmitResult Submit(SchedRequestParams params, std::function<void(const SchedUpdate&)> on_update);

  // Finishes every request ("cancelled") and joins the loop thread. Idempotent.
  void Stop();

  SchedulerStats stats() const;
  int n_slots() const { return static_cast<int>(slots_.size()); }
  int n_ctx() const;

 private:
  struct InFlight {
    uint64_t id = 0;
    std::vector<int> slots;          // slots of the step
    std::vector<int> row_slot;       // slot of each flagged (sampled) row
    std::vector<int32_t> row_draft;  // per flagged row: the drafted token it verifies, or -1
    std::vector<uint8_t> is_draft;   // per batch row: a drafted token (KV kept if accepted)
    Batch batch;
  };
  struct Slot {
    std::shared_ptr<SchedRequest> req;  // null when free
    std::vector<int32_t> tokens;        // tokens whose KV the slot holds (== cache length)
    size_t n_prompt_done = 0;           // prompt tokens in the cache (prefill progress)
    int32_t pending = -1;               // sampled token to evaluate next step (decode)
    int n_cached = 0;
    int n_generated = 0;
    uint64_t last_used = 0;
    bool in_flight = false;   // part of a submitted step
    bool need_reset = false;  // the next sampled row starts the request's sampler
    int restarts = 0;         // re-prefills after a stage lost its KV
    // What to evaluate before the next sample: the prompt, or after a failure of the pipeline
    // the prompt plus every id generated so far (a replay). The first n_own tokens may be
    // evaluated in chunks; the rest one per step, as they were generated. After a reset the
    // sampler skips n_skip samples (continued and replayed ids).
    std::vector<int32_t> feed;
    size_t n_own = 0;
    int n_skip = 0;
    std::vector<int32_t> generated;                        // ids sampled for the request, in order
    std::chrono::steady_clock::time_point replay_since{};  // set while a replay runs
    std::vector<KvCopy> copies;  // KV copies to send with the slot's next step
    std::unique_ptr<StreamDecoder> decoder;
    std::string held;            // text held back (could start a stop string)
    std::string continued_text;  // for the first update of a continuation
    // Reasoning and constraints (SchedRequestParams::in_reasoning, constraint).
    bool thinking = false;       // inside the thinking block
    int n_thinking = 0;          // tokens generated inside it
    std::string think_tail;      // the thinking's last bytes (to spot "</think>")
    std::deque<int32_t> forced;  // generated next in place of samples
    std::future<std::shared_ptr<const grammar::TokenMask>> mask_job;  // next mask, computing
  };

  void Start();
  void Loop();
  // The micro-batches (steps in flight) for `active` running sequences on a backend of this
  // depth and stage count: one per stage, at most depth and active; 1 when depth is 1.
  static int MicroBatches(int depth, int stages, int active);
  // Builds and submits one micro-batch of at most max_seqs sequences; false if none had work.
  bool SubmitStep(int max_seqs);
  void Complete(const StepResult& r);
  // Speculative decoding (scheduler_spec.cc): drafts per slot for the generating sequences of
  // the next step (empty where none), within `budget` batch tokens; SpecOk: slot s may draft.
  std::vector<std::vector<int32_t>> Drafts(int max_seqs, int budget);
  bool SpecOk(const Slot& s) const;
  // Adds slot i's pending token and its draft to the step being built.
  void AddDecode(int i, SampleSpec sp, const std::vector<int32_t>& draft, Step* step, InFlight* f);
  // The step's row k of slot s verified a drafted token: keeps it when it was accepted.
  bool KeepDrafted(Slot& s, int32_t drafted, int32_t emitted);
  void UpdateGauges();                           // kv_used into stats_
  int Admit(std::shared_ptr<SchedRequest> req);  // into a free slot (one exists); its index
  int PickSlot(const std::vector<int32_t>& prompt, int* common) const;
  void Finish(Slot& s, const std::string& reason, const std::string& error = {},
              const std::string& error_code = {});
  // The pipeline failed under slot s: re-run its prompt and generated ids from position 0.
  void StartReplay(Slot& s);
  // Sends a request's final update and releases its callback (see scheduler.cc).
  static void DeliverFinal(SchedRequest& r, const SchedUpdate& u);
  // DeliverFinal of "cancelled" for a request that never got a slot.
  static void DeliverCancelled(SchedRequest& r);
  // Runs the continued tokens of the request just admitted into s through the decoder and
  // the stop strings; finishes it when they already end the generation.
  void Continue(Slot& s);
  // Token `id` sampled for slot s: stop conditions, text, update.
  void OnToken(Slot& s, int32_t id, const TokenLogprob* logprob = nullptr);
  // Thinking and constraint state after token `id` (generated or continued); false when the
  // constraint refuses it. Then starts computing the next mask if one is needed.
  bool Track(Slot& s, int32_t id);
  void SpendBudget(Slot& s);  // the thinking budget is reached: force its end
  bool Constrained(const Slot& s) const {
    return s.req->params_.constraint && !s.thinking && s.forced.empty();
  }
  void PrefetchMask(Slot& s);
  bool MaskPending(Slot& s);  // a mask is still being computed for s's next sample
  // What slot s's next sample may be (null: anything).
  std::shared_ptr<const std::vector<uint64_t>> Allowed(Slot& s);
  // Moves text from s.held out, keeping what could begin a stop string. Returns true when
  // a stop string was found (the text before it is in *out).
  static bool TakeText(Slot& s, const std::vector<std::string>& stop, bool final, std::string* out);

  const Tokenizer& tok_;
  std::unique_ptr<StepBackend> backend_;
  SchedulerOptions opts_;
  std::vector<Slot> slots_;
  std::shared_ptr<const std::vector<uint64_t>> no_eog_;  // every token but end-of-generation
  std::deque<InFlight> in_flight_;
  uint64_t next_step_ = 1;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::shared_ptr<SchedRequest>> queue_;
  bool stop_ = false;
  uint64_t next_id_ = 1;
  uint64_t use_clock_ = 0;
  SchedulerStats stats_;  // counters; guarded by mu_
  std::thread thread_;
};

}  // namespace strata
