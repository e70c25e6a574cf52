#include "pipeline/pipeline_head.h"

#include <chrono>

#include "base/log.h"
#include "pipeline/stage_info.h"
#include "pipeline/wire.h"

namespace strata::pipeline {

// This file speaks the stage protocol throughout: its messages, codes and links.
using namespace ::strata::net;  // NOLINT(google-build-using-namespace)

PipelineHead::PipelineHead(const Model& model, const PipelineHeadOptions& opts)
    : model_(model), opts_(opts) {}

Result<std::unique_ptr<PipelineHead>> PipelineHead::Start(const Model& model,
                                                          const PipelineHeadOptions& opts) {
  if (!model.has_embedding()) return Status::Error("the pipeline head must start at layer 0");
  if (model.has_head())
    return Status::Error("the pipeline head holds every layer: there is no next stage to use");
  if (opts.link.client.secret.empty()) return Status::Error("the cluster secret is empty");
  if (opts.next_host.empty() || opts.next_port == 0)
    return Status::Error("the pipeline head needs the next stage's address (--next HOST:PORT)");
  std::unique_ptr<PipelineHead> h(new PipelineHead(model, opts));
  if (h->opts_.depth < 1) h->opts_.depth = 1;
  STRATA_RETURN_IF_ERROR(
      KvCache::CheckTypes(opts.cache_type_k, opts.cache_type_v, model.config().head_dim));
  STRATA_ASSIGN_OR_RETURN(KvCache cache, KvCache::Create(model.last_layer(), opts.n_seq, opts.n_ctx,
                                                         model.config().kv_dim(), opts.cache_type_k,
                                                         opts.cache_type_v));
  h->cache_ = std::make_unique<KvCache>(std::move(cache));
  h->pool_ = std::make_unique<ThreadPool>(std::max(1, opts.threads));
  h->forward_ = std::make_unique<Forward>(model, h->cache_.get(), h->pool_.get());
  h->link_ =
      std::make_unique<StageLink>(opts.next_host, opts.next_port, StageInfoFor(model), opts.link);
  STRATA_RETURN_IF_ERROR(h->link_->WaitConnectedOrRetrying("pipeline head"));
  PipelineHead* self = h.get();
  h->worker_ = std::thread([self] { self->Worker(); });
  return h;
}

PipelineHead::~PipelineHead() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (worker_.joinable()) worker_.join();
  if (link_) link_->Stop();
}

void PipelineHead::Submit(Step step) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    order_.push_back(step.id);
    queue_.push_back(std::move(step));
  }
  cv_.notify_all();
}

StepResult PipelineHead::Next() {
  std::unique_lock<std::mutex> lock(mu_);
  if (order_.empty()) {
    StepResult r;
    r.status = Status::Error("no step was submitted");
    return r;
  }
  const uint64_t id = order_.front();
  cv_.wait(lock, [&] { return done_.count(id) > 0; });
  StepResult r = std::move(done_[id]);
  done_.erase(id);
  order_.pop_front();
  return r;
}

void PipelineHead::Finish(StepResult r) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (r.status.ok()) {
      stats_.steps++;
      outage_since_ = {};
    } else {
      stats_.failed_steps++;
    }
    done_[r.id] = std::move(r);
  }
  cv_.notify_all();
}

void PipelineHead::FailStep(uint64_t id, Status st, bool stale) {
  StepResult r;
  r.id = id;
  r.status = std::move(st);
  r.stale = stale;
  r.pipeline = true;
  {
    std::lock_guard<std::mutex> lock(mu_);
    const auto now = std::chrono::steady_clock::now();
    if (outage_since_ == std::chrono::steady_clock::time_point{}) {
      outage_since_ = now;
      stats_.outages++;
    }
    last_failure_ = now;
    r.retry = opts_.grace_ms > 0 && !interrupted_ &&
              now < outage_since_ + std::chrono::milliseconds(opts_.grace_ms);
  }
  Finish(std::move(r));
}

void PipelineHead::Interrupt() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    interrupted_ = true;
  }
  cv_.notify_all();
}

bool PipelineHead::WaitForPipeline() {
  using Clock = std::chrono::steady_clock;
  std::unique_lock<std::mutex> lock(mu_);
  for (;;) {
    if (stop_) return false;
    const bool connected = link_->connected();
    const auto now = Clock::now();
    if (outage_since_ == Clock::time_point{}) {
      if (connected) return true;
      // The link broke with no step in flight: the outage starts now.
      outage_since_ = last_failure_ = now;
      stats_.outages++;
    }
    // A connected link during an outage: try again, but not in a tight loop when a later
    // stage keeps failing the steps at once.
    if (connected && now >= last_failure_ + std::chrono::milliseconds(100)) return true;
    if (interrupted_) return connected;
    if (now >= outage_since_ + std::chrono::milliseconds(opts_.grace_ms)) return connected;
    cv_.wait_for(lock, std::chrono::milliseconds(20));
  }
}

int PipelineHead::stages() const {
  const StageInfo peer = link_->peer();
  if (peer.n_layers == 0 || peer.last <= peer.first) return 2;  // not connected yet
  const uint32_t span = peer.last - peer.first;
  const uint32_t left = peer.n_layers > peer.last ? peer.n_layers - peer.last : 0;
  return 2 + static_cast<int>((left + span - 1) / span);
}

PipelineHeadStats PipelineHead::stats() const {
  PipelineHeadStats s;
  {
    std::lock_guard<std::mutex> lock(mu_);
    s = stats_;
    s.degraded = outage_since_ != std::chrono::steady_clock::time_point{};
  }
  s.link = link_->stats();
  return s;
}

void PipelineHead::Worker() {
  std::vector<float> hidden;
  for (;;) {
    Step step;
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [this] { return stop_ || !queue_.empty(); });
      if (stop_) return;
      step = std::move(queue_.front());
      queue_.pop_front();
    }
    const uint64_t id = step.id;
    // Fail fast while the next stage is away (after waiting for it within the grace period):
    // no point computing for a dead link.
    const bool ready = opts_.grace_ms > 0 ? WaitForPipeline() : link_->connected();
    if (!ready || !link_->connected()) {
      const LinkStats ls = link_->stats();
      FailStep(id,
               Errorf("the pipeline is unavailable: %s is down (%s); reconnecting",
                      link_->where().c_str(), ls.last_error.c_str()),
               false);
      continue;
    }
    const auto t0 = std::chrono::steady_clock::now();
    bool stale = false;
    Status st = PrepareKv(*cache_, step.batch, step.copies, &stale);
    if (st.ok()) st = forward_->Run(step.batch, nullptr, &hidden);
    {
      std::lock_guard<std::mutex> lock(mu_);
      stats_.compute_seconds +=
          std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      if (st.ok()) stats_.tokens += static_cast<uint64_t>(step.batch.size());
    }
    if (!st.ok()) {
      StepResult r;
      r.id = id;
      r.status = st;
      r.stale = stale;
      Finish(std::move(r));
      continue;
    }
    ForwardMsg m;
    m.id = id;
    m.flags = kSample;
    if (opts_.activations == Activations::kQ8) m.flags |= kQ8Hops;
    if (!step.copies.empty()) m.flags |= kHasCopies;
    m.hidden_dim = static_cast<uint32_t>(model_.config().hidden);
    m.encoding = opts_.activations;
    m.batch = ToWire(std::move(step.batch));
    m.hidden = std::move(hidden);
    m.copies = ToWire(step.copies);
    m.samples = ToWire(std::move(step.samples));
    link_->SendForward(m, [this, id](LinkReply reply) {
      if (!reply.status.ok() && reply.code != ErrorCode::kRequest) {
        FailStep(id, reply.status, reply.code == ErrorCode::kStale);
        return;
      }
      StepResult r;
      r.id = id;
      if (!reply.status.ok()) {
        r.status = reply.status;
      } else if (reply.result.kind != ResultKind::kTokenIds) {
        r.status = Status::Error("the last stage did not return token ids");
      } else {
        r.tokens = std::move(reply.result.tokens);
      }
      Finish(std::move(r));
    });
    hidden = std::move(m.hidden);  // reuse the buffer
  }
}

}  // namespace strata::pipeline
