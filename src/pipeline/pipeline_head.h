// The head of a pipeline as a StepBackend for the Scheduler: runs layers [0, k) of the model
// locally on a compute thread, sends the hidden states of each step to the next stage over a
// StageLink and gets the tail's sampled token ids back. Several steps (micro-batches) are in
// flight at once: while later stages work on one, the head computes the next. When the link
// fails, the steps in flight fail at once; within the grace period they fail as "retry" (the
// scheduler replays their sequences) and later steps wait for the link to come back, so a
// stage restarted in time costs a pause, not the requests. Past it, steps fail until the link
// has reconnected by itself.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "base/thread_pool.h"
#include "model/forward.h"
#include "model/kv_cache.h"
#include "model/weights.h"
#include "net/link.h"
#include "net/protocol.h"
#include "runtime/step.h"

namespace strata::pipeline {

struct PipelineHeadOptions {
  std::string next_host;
  uint16_t next_port = 0;
  net::LinkOptions link;  // link.client.secret is required
  net::Activations activations = net::Activations::kF32;
  int n_seq = 4;  // KV slots (the same on every stage)
  int n_ctx = 4096;
  int threads = 1;
  DType cache_type_k = DType::F16;  // KV cache types (KvCache: F16, Q8_0, Q4_0)
  DType cache_type_v = DType::F16;
  int depth = 4;  // micro-batches in flight at most (the scheduler uses one per stage)
  // A failed stage that is back within this long loses no request (they are replayed into
  // the re-formed pipeline); 0: steps fail as soon as the pipeline does.
  int grace_ms = 10000;
};

struct PipelineHeadStats {
  uint64_t steps = 0, failed_steps = 0;
  uint64_t tokens = 0;         // tokens through the head's layers
  uint64_t outages = 0;        // times the pipeline failed after working
  bool degraded = false;       // failing now (waiting for a stage to come back)
  double compute_seconds = 0;  // the head's forward passes
  net::LinkStats link;
};

class PipelineHead : public StepBackend {
 public:
  // `model` must start at layer 0 and not hold the head (a later stage has it).
  static Result<std::unique_ptr<PipelineHead>> Start(const Model& model,
                                                     const PipelineHeadOptions& opts);
  ~PipelineHead() override;

  int n_seq() const override { return cache_->n_seq(); }
  int n_ctx() const override { return cache_->n_ctx(); }
  int depth() const override { return opts_.depth; }
  // This head, the next stage and, when that one does not end the model, as many more of its
  // size as the layers left need (the head sees only its next stage); 2 before it connects.
  int stages() const override;
  void Submit(Step step) override;
  StepResult Next() override;

  // The node is stopping: stop waiting for a failed stage (steps fail at once, no replay).
  void Interrupt();

  PipelineHeadStats stats() const;
  net::StageLink& link() { return *link_; }

 private:
  PipelineHead(const Model& model, const PipelineHeadOptions& opts);
  void Worker();
  void Finish(StepResult r);
  // A step failed because of the pipeline: starts (or continues) an outage and marks it for a
  // replay when the grace period allows.
  void FailStep(uint64_t id, Status st, bool stale);
  // Before a step: while the pipeline is failing, waits (at most until the outage's grace
  // period ends) for the next stage to be connected. False: give up on the step.
  bool WaitForPipeline();

  const Model& model_;
  PipelineHeadOptions opts_;
  std::unique_ptr<KvCache> cache_;
  std::unique_ptr<ThreadPool> pool_;
  std::unique_ptr<Forward> forward_;
  std::unique_ptr<net::StageLink> link_;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  bool interrupted_ = false;
  std::deque<Step> queue_;               // submitted, not yet computed
  std::deque<uint64_t> order_;           // submitted, not yet returned by Next()
  std::map<uint64_t, StepResult> done_;  // results waiting for Next()
  PipelineHeadStats stats_;
  // The current outage: since the first failed step (zero while the pipeline works) and the
  // latest failure.
  std::chrono::steady_clock::time_point outage_since_{}, last_failure_{};
  std::thread worker_;
};

}  // namespace strata::pipeline
