#include "runtime/scheduler.h"

#include <algorithm>

namespace strata {

Scheduler::Scheduler(Engine* engine, const SchedulerOptions& opts)
    : Scheduler(engine->tokenizer(),
                std::make_unique<LocalBackend>(engine->model(), &engine->cache(), &engine->pool()),
                opts) {}

Scheduler::Scheduler(const Tokenizer& tok, std::unique_ptr<StepBackend> backend,
                     const SchedulerOptions& opts)
    : tok_(tok),
      backend_(std::move(backend)),
      opts_(opts),
      slots_(static_cast<size_t>(backend_->n_seq())) {
  if (opts_.n_batch < 1) opts_.n_batch = 1;
  if (opts_.max_queue < 0) opts_.max_queue = 0;
  stats_.slots_total = n_slots();
  stats_.kv_total = n_slots() * backend_->n_ctx();
  thread_ = std::thread([this] { Loop(); });
}

Scheduler::~Scheduler() { Stop(); }

int Scheduler::n_ctx() const { return backend_->n_ctx(); }

void Scheduler::Stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stop_ && !thread_.joinable()) return;
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

SubmitResult Scheduler::Submit(SchedRequestParams params,
                               std::function<void(const SchedUpdate&)> on_update) {
  SubmitResult r;
  if (params.prompt.empty()) {
    r.code = SubmitCode::kInvalid;
    r.message = "the prompt is empty";
    return r;
  }
  const int32_t n_vocab = tok_.n_vocab();
  for (int32_t t : params.prompt) {
    if (t < 0 || t >= n_vocab) {
      r.code = SubmitCode::kInvalid;
      r.message = StrFormat("token id %d is out of the vocabulary (0..%d)", t, n_vocab - 1);
      return r;
    }
  }
  if (params.n_continued < 0 || static_cast<size_t>(params.n_continued) >= params.prompt.size()) {
    r.code = SubmitCode::kInvalid;
    r.message = StrFormat("%d continued tokens need a prompt before them (%zu tokens in all)",
                          params.n_continued, params.prompt.size());
    return r;
  }
  if (static_cast<int>(params.prompt.size()) >= n_ctx()) {
    r.code = SubmitCode::kInvalid;
    r.message = StrFormat("the prompt has %zu tokens but the context holds %d",
                          params.prompt.size(), n_ctx());
    return r;
  }
  auto req = std::make_shared<SchedRequest>();
  req->params_ = std::move(params);
  req->on_update_ = std::move(on_update);
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stop_) {
      r.code = SubmitCode::kStopped;
      r.message = "the scheduler is stopped";
      return r;
    }
    // Requests beyond the free slots wait; the queue bound counts those only.
    const int free_slots = stats_.slots_total - stats_.running;
    if (static_cast<int>(queue_.size()) >= free_slots + opts_.max_queue) {
      r.code = SubmitCode::kQueueFull;
      r.message = StrFormat("the server is busy: %d requests are waiting", stats_.waiting);
      return r;
    }
    req->id_ = next_id_++;
    queue_.push_back(req);
    stats_.waiting = static_cast<int>(queue_.size());
  }
  cv_.notify_all();
  r.request = std::move(req);
  return r;
}

SchedulerStats Scheduler::stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  SchedulerStats s = stats_;
  s.waiting = static_cast<int>(queue_.size());
  return s;
}

namespace {

int PromptTokens(const SchedRequestParams& p) {
  return static_cast<int>(p.prompt.size()) - p.n_continued;
}

size_t CommonPrefix(const std::vector<int32_t>& a, const std::vector<int32_t>& b) {
  const size_t n = std::min(a.size(), b.size());
  size_t i = 0;
  while (i < n && a[i] == b[i]) ++i;
  return i;
}

}  // namespace

void Scheduler::DeliverFinal(SchedRequest& r, const SchedUpdate& u) {
  // The callback usually owns the receiver of the updates, which holds the request handle:
  // keeping the callback after the last update would make a reference cycle (request ->
  // callback -> receiver -> request) and leak every finished request. Release it here.
  std::function<void(const SchedUpdate&)> cb = std::move(r.on_update_);
  r.on_update_ = nullptr;
  if (cb) cb(u);
}

void Scheduler::DeliverCancelled(SchedRequest& r) {
  SchedUpdate u;
  u.done = true;
  u.finish_reason = "cancelled";
  u.n_prompt = PromptTokens(r.params_);
  DeliverFinal(r, u);
}

int Scheduler::PickSlot(const std::vector<int32_t>& prompt, int* common) const {
  int best = -1;
  size_t best_common = 0;
  for (int i = 0; i < n_slots(); ++i) {
    const Slot& s = slots_[static_cast<size_t>(i)];
    if (s.req || s.in_flight) continue;
    const size_t c = opts_.prompt_cache ? CommonPrefix(s.tokens, prompt) : 0;
    if (best < 0 || c > best_common ||
        (c == best_common && s.last_used < slots_[static_cast<size_t>(best)].last_used)) {
      best = i;
      best_common = c;
    }
  }
  *common = static_cast<int>(best_common);
  return best;
}

int Scheduler::Admit(std::shared_ptr<SchedRequest> req) {
  const std::vector<int32_t>& prompt = req->params_.prompt;
  int common = 0;
  const int idx = PickSlot(prompt, &common);
  Slot& s = slots_[static_cast<size_t>(idx)];
  // Keep at least one prompt token to evaluate: its logits give the first sampled token.
  int keep = std::min(common, static_cast<int>(prompt.size()) - 1);
  // A running sequence may share more (a parallel request with the same system prompt):
  // copy its keys/values for the shared positions.
  int src = -1;
  size_t src_common = 0;
  if (opts_.prompt_cache) {
    for (int i = 0; i < n_slots(); ++i) {
      const Slot& o = slots_[static_cast<size_t>(i)];
      if (!o.req || i == idx) continue;
      const size_t c = CommonPrefix(o.tokens, prompt);
      if (c > src_common) {
        src = i;
        src_common = c;
      }
    }
  }
  const int copy = std::min(static_cast<int>(src_common), static_cast<int>(prompt.size()) - 1);
  s.copies.clear();
  if (src >= 0 && copy > keep) {
    s.copies.push_back(KvCopy{src, idx, copy});
    s.tokens.assign(slots_[static_cast<size_t>(src)].tokens.begin(),
                    slots_[static_cast<size_t>(src)].tokens.begin() + copy);
    keep = copy;
  }
  s.tokens.resize(static_cast<size_t>(keep));
  s.n_prompt_done = static_cast<size_t>(keep);
  s.n_cached = keep;
  s.n_generated = 0;
  s.pending = -1;
  s.held.clear();
  s.continued_text.clear();
  s.need_reset = true;  // the backend's sampler for this slot starts over with the prompt
  s.restarts = 0;
  s.feed = prompt;
  s.n_own = prompt.size() - static_cast<size_t>(req->params_.n_continued);
  s.n_skip = req->params_.n_continued;
  s.generated.clear();
  s.replay_since = {};
  s.decoder = std::make_unique<StreamDecoder>(tok_);
  s.last_used = ++use_clock_;
  s.thinking = req->params_.in_reasoning;
  s.n_thinking = 0;
  s.think_tail.clear();
  s.forced.clear();
  if (s.mask_job.valid()) s.mask_job.wait();
  s.mask_job = {};
  s.req = std::move(req);
  std::lock_guard<std::mutex> lock(mu_);
  stats_.running++;
  stats_.prompt_tokens += prompt.size();
  stats_.cached_tokens += static_cast<uint64_t>(keep);
  if (keep + 1 < static_cast<int>(prompt.size())) stats_.prefills++;
  return idx;
}

void Scheduler::Continue(Slot& s) {
  const SchedRequestParams& p = s.req->params_;
  if (p.n_continued == 0) {
    SpendBudget(s);  // a budget of 0
    PrefetchMask(s);
    return;
  }
  std::string text;
  for (size_t i = p.prompt.size() - static_cast<size_t>(p.n_continued); i < p.prompt.size(); ++i) {
    const int32_t id = p.prompt[i];
    (void)Track(s, id);    // the earlier run generated it under the same rules
    if (tok_.IsEog(id)) {  // the earlier run had ended here
      s.continued_text = std::move(text);
      s.decoder.reset();
      Finish(s, "stop");
      return;
    }
    s.held += s.decoder->Push(id);
    std::string released;
    const bool hit = TakeText(s, p.stop, /*final=*/false, &released);
    text += released;
    if (hit) {
      s.continued_text = std::move(text);
      s.decoder.reset();
      Finish(s, "stop");
      return;
    }
  }
  s.continued_text = std::move(text);
  SpendBudget(s);
  PrefetchMask(s);
}

bool Scheduler::TakeText(Slot& s, const std::vector<std::string>& stop, bool final,
                         std::string* out) {
  out->clear();
  size_t first = std::string::npos;
  for (const std::string& st : stop) {
    if (st.empty()) continue;
    const size_t p = s.held.find(st);
    if (p != std::string::npos && p < first) first = p;
  }
  if (first != std::string::npos) {
    out->assign(s.held, 0, first);
    s.held.clear();
    return true;
  }
  size_t keep = 0;
  if (!final) {
    // Longest suffix of held that is a proper prefix of some stop string.
    for (const std::string& st : stop) {
      const size_t max_len = std::min(st.size() - (st.empty() ? 0 : 1), s.held.size());
      for (size_t len = max_len; len > keep; --len) {
        if (s.held.compare(s.held.size() - len, len, st, 0, len) == 0) {
          keep = len;
          break;
        }
      }
    }
  }
  out->assign(s.held, 0, s.held.size() - keep);
  s.held.erase(0, s.held.size() - keep);
  return false;
}

void Scheduler::Finish(Slot& s, const std::string& reason, const std::string& error,
                       const std::string& error_code) {
  SchedUpdate u;
  u.done = true;
  u.finish_reason = reason;
  u.error = error;
  u.error_code = error_code;
  u.n_prompt = PromptTokens(s.req->params_);
  u.n_cached = s.n_cached;
  u.n_generated = s.n_generated;
  u.n_thinking = s.n_thinking;
  u.continued_text = std::move(s.continued_text);
  s.continued_text.clear();
  if (s.mask_job.valid()) s.mask_job.wait();
  s.mask_job = {};
  s.forced.clear();
  if (reason != "error" && reason != "stop" && s.decoder) {
    // Whatever the decoder and the stop-string hold back is final text now.
    s.held += s.decoder->Flush();
    std::string text;
    const bool hit = TakeText(s, s.req->params_.stop, /*final=*/true, &text);
    u.text = std::move(text);
    if (hit && reason == "length") u.finish_reason = "stop";
  }
  std::shared_ptr<SchedRequest> req = std::move(s.req);
  if (!s.copies.empty()) {  // the copied prefix never reached the backend
    s.copies.clear();
    s.tokens.clear();
  }
  s.req.reset();
  s.decoder.reset();
  s.held.clear();
  s.feed.clear();
  s.generated.clear();
  s.replay_since = {};
  s.pending = -1;
  s.last_used = ++use_clock_;
  {
    // Counted before the callback: whoever waits on it sees the slot free.
    std::lock_guard<std::mutex> lock(mu_);
    stats_.requests_done++;
    stats_.running--;
  }
  DeliverFinal(*req, u);
}

void Scheduler::OnToken(Slot& s, int32_t id, const TokenLogprob* logprob) {
  const Tokenizer& tok = tok_;
  const SchedRequestParams& p = s.req->params_;
  if (!s.forced.empty()) {  // the thinking budget is spent: its closing text instead
    id = s.forced.front();
    s.forced.pop_front();
  }
  const bool constrained = Constrained(s);
  if (!Track(s, id)) {
    Finish(s, "error", StrFormat("the grammar does not allow the sampled token %d", id),
           "internal_error");
    return;
  }
  // The grammar can go no further: the generation ends with this token.
  const bool grammar_done =
      constrained && !tok.IsEog(id) && p.constraint->Accepting() && !p.constraint->CanContinue();
  s.n_generated++;
  s.generated.push_back(id);
  {
    std::lock_guard<std::mutex> lock(mu_);
    stats_.generated_tokens++;
    if (s.replay_since != std::chrono::steady_clock::time_point{}) {
      stats_.replay_seconds +=
          std::chrono::duration<double>(std::chrono::steady_clock::now() - s.replay_since).count();
      s.replay_since = {};
    }
  }
  SchedUpdate u;
  u.token = id;
  if (logprob && p.top_logprobs >= 0) u.logprob = *logprob;
  u.n_prompt = PromptTokens(p);
  u.continued_text = std::move(s.continued_text);
  s.continued_text.clear();
  u.n_cached = s.n_cached;
  u.n_generated = s.n_generated;
  u.n_thinking = s.n_thinking;
  if (tok.IsEog(id) || grammar_done) {
    if (!tok.IsEog(id)) s.held += s.decoder->Push(id);
    // The end-of-generation token is not text; what is held back is final now.
    s.held += s.decoder->Flush();
    TakeText(s, p.stop, /*final=*/true, &u.text);
    if (s.req->on_update_) s.req->on_update_(u);
    s.decoder.reset();
    Finish(s, "stop");
    return;
  }
  s.held += s.decoder->Push(id);
  const bool hit = TakeText(s, p.stop, /*final=*/false, &u.text);
  if (s.req->on_update_) s.req->on_update_(u);
  if (hit) {
    Finish(s, "stop");
    return;
  }
  if (s.n_generated >= p.max_tokens) {
    Finish(s, "length");
    return;
  }
  if (static_cast<int>(s.tokens.size()) >= n_ctx()) {
    Finish(s, "length");
    return;
  }
  s.pending = id;
}

void Scheduler::Loop() {
  for (;;) {
    UpdateGauges();
    // Admit waiting requests into free slots; sleep when there is nothing to do.
    {
      std::unique_lock<std::mutex> lock(mu_);
      for (;;) {
        if (stop_) break;
        const bool any_running = std::any_of(slots_.begin(), slots_.end(),
                                             [](const Slot& s) { return s.req != nullptr; });
        const bool any_free = std::any_of(slots_.begin(), slots_.end(), [](const Slot& s) {
          return s.req == nullptr && !s.in_flight;
        });
        if (any_running || !in_flight_.empty() || (any_free && !queue_.empty())) break;
        cv_.wait(lock);
      }
      if (stop_) {
        std::deque<std::shared_ptr<SchedRequest>> q;
        q.swap(queue_);
        stats_.waiting = 0;
        lock.unlock();
        // Steps in flight come back (a failed connection answers them at once).
        while (!in_flight_.empty()) {
          (void)backend_->Next();
          for (int i : in_flight_.front().slots) {
            slots_[static_cast<size_t>(i)].in_flight = false;
            slots_[static_cast<size_t>(i)].tokens.clear();  // progress unknown
          }
          in_flight_.pop_front();
        }
        for (Slot& s : slots_)
          if (s.req) Finish(s, "cancelled");
        for (auto& r : q) DeliverCancelled(*r);
        return;
      }
    }
    for (;;) {
      std::shared_ptr<SchedRequest> next;
      {
        std::lock_guard<std::mutex> lock(mu_);
        const bool any_free = std::any_of(slots_.begin(), slots_.end(), [](const Slot& s) {
          return s.req == nullptr && !s.in_flight;
        });
        if (!any_free || queue_.empty()) break;
        next = std::move(queue_.front());
        queue_.pop_front();
        stats_.waiting = static_cast<int>(queue_.size());
      }
      if (next->cancelled()) {
        {
          std::lock_guard<std::mutex> lock(mu_);
          stats_.requests_done++;
        }
        DeliverCancelled(*next);
        continue;
      }
      const int idx = Admit(std::move(next));
      Continue(slots_[static_cast<size_t>(idx)]);
    }
    UpdateGauges();

    // Cancellations and deadlines, checked once per step (a slot in flight waits for its step).
    const auto now = std::chrono::steady_clock::now();
    for (Slot& s : slots_) {
      if (!s.req || s.in_flight) continue;
      if (s.req->cancelled()) {
        Finish(s, "cancelled");
      } else if (s.req->params_.deadline != std::chrono::steady_clock::time_point{} &&
                 now >= s.req->params_.deadline) {
        Finish(s, "timeout");
      } else if (s.req->params_.max_tokens <= 0 && s.n_prompt_done == s.feed.size()) {
        Finish(s, "length");
      }
    }

    // Micro-batches: the running sequences split into groups, each its own step, so every
    // stage of a pipeline has one to work on (MicroBatches). Depth 1: one step with all.
    const int active = static_cast<int>(std::count_if(
        slots_.begin(), slots_.end(), [](const Slot& s) { return s.req != nullptr; }));
    const int groups = MicroBatches(backend_->depth(), backend_->stages(), active);
    const int per_step = groups == 1 ? n_slots() : (active + groups - 1) / groups;
    while (static_cast<int>(in_flight_.size()) < groups && SubmitStep(per_step)) {}
    if (in_flight_.empty()) {  // nothing could run: wait for a mask being computed
      for (Slot& s : slots_)
        if (s.req && s.mask_job.valid()) {
          s.mask_job.wait();
          break;
        }
      continue;
    }
    Complete(backend_->Next());
  }
}

int Scheduler::MicroBatches(int depth, int stages, int active) {
  // Steps in flight are capped at the group count too: a sequence whose step completes waits
  // for the next completion rather than going out alone, so groups that started small (the
  // requests arrived one by one) merge into full ones.
  if (depth <= 1 || active <= 1) return 1;
  return std::clamp(stages, 1, std::min(depth, active));
}

bool Scheduler::SubmitStep(int max_seqs) {
  Step step;
  InFlight f;
  auto spec = [&](Slot& s) {
    SampleSpec sp;
    if (s.need_reset) {
      sp.reset = true;
      sp.params = s.req->params_.sampler;
      sp.accept = s.feed;
      if (s.n_skip > 0) sp.accept.push_back(SkipSamplesEntry(s.n_skip));
      s.need_reset = false;
    }
    sp.allow = Allowed(s);
    sp.top_logprobs = s.req->params_.top_logprobs;
    return sp;
  };
  // A decode token per generating sequence (and its draft, speculating), then prompt chunks.
  int budget = opts_.n_batch;
  const std::vector<std::vector<int32_t>> drafts = Drafts(max_seqs, budget);
  for (int i = 0; i < n_slots() && static_cast<int>(f.slots.size()) < max_seqs; ++i) {
    Slot& s = slots_[static_cast<size_t>(i)];
    if (!s.req || s.in_flight || s.pending < 0) continue;
    if (MaskPending(s)) continue;  // its mask is being computed: the others go on
    const std::vector<int32_t>& d = drafts[static_cast<size_t>(i)];
    AddDecode(i, spec(s), d, &step, &f);
    f.slots.push_back(i);
    budget -= 1 + static_cast<int>(d.size());
  }
  for (int i = 0; i < n_slots() && budget > 0 && static_cast<int>(f.slots.size()) < max_seqs; ++i) {
    Slot& s = slots_[static_cast<size_t>(i)];
    if (!s.req || s.in_flight || s.pending >= 0) continue;
    const std::vector<int32_t>& prompt = s.feed;
    const size_t left = prompt.size() - s.n_prompt_done;
    if (left == 0) continue;
    size_t m = std::min(left, static_cast<size_t>(budget));
    // Continued tokens were generated one per step: evaluate them the same way (a prompt
    // chunk's rows can round differently from single-token steps, and a seeded continuation
    // must see the undisturbed run's exact logits).
    const size_t own = s.n_own;
    if (s.n_prompt_done >= own) {
      m = 1;
    } else {
      m = std::min(m, own - s.n_prompt_done);
    }
    // The chunk that samples waits for its first mask (being computed): the rest goes on.
    if (s.n_prompt_done + m == prompt.size() && MaskPending(s)) {
      if (m <= 1) continue;
      --m;
    }
    const int start = static_cast<int>(s.tokens.size());
    for (size_t j = 0; j < m; ++j) {
      const bool last = s.n_prompt_done + j + 1 == prompt.size();
      const bool out = last && s.req->params_.max_tokens > 0;
      step.batch.Add(prompt[s.n_prompt_done + j], start + static_cast<int>(j), i, out);
      if (out) {
        step.samples.push_back(spec(s));
        f.row_slot.push_back(i);
      }
    }
    f.slots.push_back(i);
    budget -= static_cast<int>(m);
  }
  if (f.slots.empty()) return false;
  for (int i : f.slots) {
    Slot& s = slots_[static_cast<size_t>(i)];
    s.in_flight = true;
    step.copies.insert(step.copies.end(), s.copies.begin(), s.copies.end());
    s.copies.clear();
  }
  step.id = f.id = next_step_++;
  f.is_draft.resize(static_cast<size_t>(step.batch.size()), 0);
  f.row_draft.resize(f.row_slot.size(), -1);
  f.batch = step.batch;
  backend_->Submit(std::move(step));
  in_flight_.push_back(std::move(f));
  return true;
}

void Scheduler::Complete(const StepResult& r) {
  InFlight f = std::move(in_flight_.front());
  in_flight_.pop_front();
  for (int i : f.slots) slots_[static_cast<size_t>(i)].in_flight = false;
  Status st = r.status;
  if (st.ok() && r.id != f.id)
    st = Errorf("step %llu answered as %llu", static_cast<unsigned long long>(f.id),
                static_cast<unsigned long long>(r.id));
  if (st.ok() && r.tokens.size() != f.row_slot.size())
    st = Errorf("the step returned %zu tokens for %zu sampled rows", r.tokens.size(),
                f.row_slot.size());
  if (!st.ok()) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stats_.step_errors++;
    }
    // A failed step may mean a stage restarted: no cached prompt can be trusted any more.
    for (Slot& s : slots_)
      if (!s.req && !s.in_flight) s.tokens.clear();
    for (int i : f.slots) {
      Slot& s = slots_[static_cast<size_t>(i)];
      s.tokens.clear();
      s.copies.clear();
      if (!s.req) continue;
      if (r.retry && !s.req->cancelled()) {
        StartReplay(s);
        continue;
      }
      if (r.stale && s.n_generated == 0 && s.restarts < 2 && !s.req->cancelled()) {
        // Nothing was sent to the client yet: run the prompt again from position 0.
        s.restarts++;
        s.n_prompt_done = 0;
        s.n_cached = 0;
        s.pending = -1;
        s.need_reset = true;
        std::lock_guard<std::mutex> lock(mu_);
        stats_.reprefills++;
        continue;
      }
      Finish(s, "error", st.message(), r.pipeline ? "pipeline_stage_failed" : "internal_error");
    }
    return;
  }
  // Record what each slot's cache now holds.
  for (int i = 0; i < f.batch.size(); ++i) {
    if (f.is_draft[static_cast<size_t>(i)]) continue;  // kept below if accepted
    Slot& s = slots_[static_cast<size_t>(f.batch.seq[static_cast<size_t>(i)])];
    s.tokens.push_back(f.batch.tokens[static_cast<size_t>(i)]);
    if (s.pending >= 0) {
      s.pending = -1;
    } else {
      s.n_prompt_done++;
    }
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    stats_.evaluated_tokens += static_cast<uint64_t>(f.batch.size());
    stats_.steps++;
  }
  for (size_t k = 0; k < f.row_slot.size(); ++k) {
    Slot& s = slots_[static_cast<size_t>(f.row_slot[k])];
    if (!s.req) continue;
    if (f.row_draft[k] >= 0 && !KeepDrafted(s, f.row_draft[k], r.tokens[k])) continue;
    OnToken(s, r.tokens[k], k < r.logprobs.size() ? &r.logprobs[k] : nullptr);
  }
}

void Scheduler::StartReplay(Slot& s) {
  // The generated ids (the pending one included) become part of what is evaluated: the
  // sampler is reset with all of them accepted and skips their draws, so the next token is
  // the undisturbed run's. Text and stop-string state stay as they are: nothing is re-sent.
  const SchedRequestParams& p = s.req->params_;
  s.feed = p.prompt;
  s.feed.insert(s.feed.end(), s.generated.begin(), s.generated.end());
  s.n_own = p.prompt.size() - static_cast<size_t>(p.n_continued);
  s.n_skip = p.n_continued + static_cast<int>(s.generated.size());
  s.n_prompt_done = 0;
  s.pending = -1;
  s.need_reset = true;
  if (s.replay_since == std::chrono::steady_clock::time_point{})
    s.replay_since = std::chrono::steady_clock::now();
  std::lock_guard<std::mutex> lock(mu_);
  stats_.replays++;
  stats_.replayed_tokens += s.feed.size();
}

void Scheduler::UpdateGauges() {
  int kv_used = 0;
  for (const Slot& s : slots_) kv_used += static_cast<int>(s.tokens.size());
  std::lock_guard<std::mutex> lock(mu_);
  stats_.kv_used = kv_used;
}

}  // namespace strata
