#include "runtime/scheduler.h"

#include <algorithm>

namespace strata {

Scheduler::Scheduler(Engine* engine, const SchedulerOptions& opts)
    : engine_(engine),
      opts_(opts),
      forward_(engine->model(), &engine->cache(), &engine->pool()),
      slots_(static_cast<size_t>(engine->cache().n_seq())) {
  if (opts_.n_batch < 1) opts_.n_batch = 1;
  if (opts_.max_queue < 0) opts_.max_queue = 0;
  for (int i = 0; i < n_slots(); ++i) {
    engine_->cache().Clear(i);
  }
  stats_.slots_total = n_slots();
  stats_.kv_total = n_slots() * engine_->cache().n_ctx();
  thread_ = std::thread([this] { Loop(); });
}

Scheduler::~Scheduler() { Stop(); }

int Scheduler::n_ctx() const { return engine_->cache().n_ctx(); }

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
  const int32_t n_vocab = engine_->tokenizer().n_vocab();
  for (int32_t t : params.prompt) {
    if (t < 0 || t >= n_vocab) {
      r.code = SubmitCode::kInvalid;
      r.message = StrFormat("token id %d is out of the vocabulary (0..%d)", t, n_vocab - 1);
      return r;
    }
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

int Scheduler::PickSlot(const std::vector<int32_t>& prompt, int* common) const {
  int best = -1;
  size_t best_common = 0;
  for (int i = 0; i < n_slots(); ++i) {
    const Slot& s = slots_[static_cast<size_t>(i)];
    if (s.req) continue;
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

void Scheduler::Admit(std::shared_ptr<SchedRequest> req) {
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
  if (src >= 0 && copy > keep) {
    engine_->cache().CopyPrefix(src, idx, copy);
    s.tokens.assign(slots_[static_cast<size_t>(src)].tokens.begin(),
                    slots_[static_cast<size_t>(src)].tokens.begin() + copy);
    keep = copy;
  }
  engine_->cache().set_length(idx, keep);
  s.tokens.resize(static_cast<size_t>(keep));
  s.n_prompt_done = static_cast<size_t>(keep);
  s.n_cached = keep;
  s.n_generated = 0;
  s.pending = -1;
  s.held.clear();
  s.sampler = std::make_unique<Sampler>(req->params_.sampler);
  for (int32_t t : prompt) s.sampler->Accept(t);
  s.decoder = std::make_unique<StreamDecoder>(engine_->tokenizer());
  s.last_used = ++use_clock_;
  s.req = std::move(req);
  std::lock_guard<std::mutex> lock(mu_);
  stats_.running++;
  stats_.prompt_tokens += prompt.size();
  stats_.cached_tokens += static_cast<uint64_t>(keep);
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

void Scheduler::Finish(Slot& s, const std::string& reason, const std::string& error) {
  SchedUpdate u;
  u.done = true;
  u.finish_reason = reason;
  u.error = error;
  u.n_prompt = static_cast<int>(s.req->params_.prompt.size());
  u.n_cached = s.n_cached;
  u.n_generated = s.n_generated;
  if (reason != "error" && reason != "stop" && s.decoder) {
    // Whatever the decoder and the stop-string hold back is final text now.
    s.held += s.decoder->Flush();
    std::string text;
    const bool hit = TakeText(s, s.req->params_.stop, /*final=*/true, &text);
    u.text = std::move(text);
    if (hit && reason == "length") u.finish_reason = "stop";
  }
  std::shared_ptr<SchedRequest> req = std::move(s.req);
  s.req.reset();
  s.sampler.reset();
  s.decoder.reset();
  s.held.clear();
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

void Scheduler::OnLogits(Slot& s, const float* logits) {
  const Tokenizer& tok = engine_->tokenizer();
  const SchedRequestParams& p = s.req->params_;
  const int32_t id = s.sampler->Sample(logits, tok.n_vocab());
  s.sampler->Accept(id);
  s.n_generated++;
  {
    std::lock_guard<std::mutex> lock(mu_);
    stats_.generated_tokens++;
  }
  SchedUpdate u;
  u.token = id;
  u.n_prompt = static_cast<int>(p.prompt.size());
  u.n_cached = s.n_cached;
  u.n_generated = s.n_generated;
  if (tok.IsEog(id)) {
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
  if (engine_->cache().length(static_cast<int>(&s - slots_.data())) >= n_ctx()) {
    Finish(s, "length");
    return;
  }
  s.pending = id;
}

void Scheduler::Loop() {
  KvCache& cache = engine_->cache();
  const int32_t n_vocab = engine_->tokenizer().n_vocab();
  for (;;) {
    UpdateGauges();
    // Admit waiting requests into free slots; sleep when there is nothing to do.
    {
      std::unique_lock<std::mutex> lock(mu_);
      for (;;) {
        if (stop_) break;
        const bool any_running =
            std::any_of(slots_.begin(), slots_.end(), [](const Slot& s) { return s.req != nullptr; });
        const bool any_free =
            std::any_of(slots_.begin(), slots_.end(), [](const Slot& s) { return s.req == nullptr; });
        if (any_running || (any_free && !queue_.empty())) break;
        cv_.wait(lock);
      }
      if (stop_) {
        std::deque<std::shared_ptr<SchedRequest>> q;
        q.swap(queue_);
        stats_.waiting = 0;
        lock.unlock();
        for (Slot& s : slots_)
          if (s.req) Finish(s, "cancelled");
        for (auto& r : q) {
          SchedUpdate u;
          u.done = true;
          u.finish_reason = "cancelled";
          u.n_prompt = static_cast<int>(r->params_.prompt.size());
          DeliverFinal(*r, u);
        }
        return;
      }
    }
    for (;;) {
      std::shared_ptr<SchedRequest> next;
      {
        std::lock_guard<std::mutex> lock(mu_);
        const bool any_free =
            std::any_of(slots_.begin(), slots_.end(), [](const Slot& s) { return s.req == nullptr; });
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
        SchedUpdate u;
        u.done = true;
        u.finish_reason = "cancelled";
        u.n_prompt = static_cast<int>(next->params_.prompt.size());
        DeliverFinal(*next, u);
        continue;
      }
      Admit(std::move(next));
    }
    UpdateGauges();

    // Cancellations and deadlines, checked once per step.
    const auto now = std::chrono::steady_clock::now();
    for (Slot& s : slots_) {
      if (!s.req) continue;
      if (s.req->cancelled()) {
        Finish(s, "cancelled");
      } else if (s.req->params_.deadline != std::chrono::steady_clock::time_point{} &&
                 now >= s.req->params_.deadline) {
        Finish(s, "timeout");
      } else if (s.req->params_.max_tokens <= 0 &&
                 s.n_prompt_done == s.req->params_.prompt.size()) {
        Finish(s, "length");
      }
    }

    // One batch: a decode token per generating sequence, then prompt chunks.
    batch_.Clear();
    batch_slot_.clear();
    int budget = opts_.n_batch;
    for (int i = 0; i < n_slots(); ++i) {
      Slot& s = slots_[static_cast<size_t>(i)];
      if (!s.req || s.pending < 0) continue;
      batch_.Add(s.pending, cache.length(i), i, true);
      batch_slot_.push_back(i);
      --budget;
    }
    for (int i = 0; i < n_slots() && budget > 0; ++i) {
      Slot& s = slots_[static_cast<size_t>(i)];
      if (!s.req || s.pending >= 0) continue;
      const std::vector<int32_t>& prompt = s.req->params_.prompt;
      const size_t left = prompt.size() - s.n_prompt_done;
      if (left == 0) continue;
      const size_t m = std::min(left, static_cast<size_t>(budget));
      const int start = cache.length(i);
      for (size_t j = 0; j < m; ++j) {
        const bool last = s.n_prompt_done + j + 1 == prompt.size();
        batch_.Add(prompt[s.n_prompt_done + j], start + static_cast<int>(j), i,
                   last && s.req->params_.max_tokens > 0);
        if (last && s.req->params_.max_tokens > 0) batch_slot_.push_back(i);
      }
      budget -= static_cast<int>(m);
    }
    if (batch_.size() == 0) continue;

    const Status st = forward_.Run(batch_, nullptr, &logits_);
    if (!st.ok()) {
      for (int i = 0; i < batch_.size(); ++i) {
        Slot& s = slots_[static_cast<size_t>(batch_.seq[static_cast<size_t>(i)])];
        if (!s.req) continue;
        const int idx = static_cast<int>(&s - slots_.data());
        cache.Clear(idx);
        s.tokens.clear();
        Finish(s, "error", st.message());
      }
      continue;
    }
    // Record what each slot's cache now holds.
    for (int i = 0; i < batch_.size(); ++i) {
      Slot& s = slots_[static_cast<size_t>(batch_.seq[static_cast<size_t>(i)])];
      s.tokens.push_back(batch_.tokens[static_cast<size_t>(i)]);
      if (s.pending >= 0) {
        s.pending = -1;
      } else {
        s.n_prompt_done++;
      }
    }
    {
      std::lock_guard<std::mutex> lock(mu_);
      stats_.evaluated_tokens += static_cast<uint64_t>(batch_.size());
      stats_.steps++;
    }
    for (size_t r = 0; r < batch_slot_.size(); ++r) {
      Slot& s = slots_[static_cast<size_t>(batch_slot_[r])];
      if (!s.req) continue;
      OnLogits(s, logits_.data() + r * static_cast<size_t>(n_vocab));
    }
  }
}

void Scheduler::UpdateGauges() {
  int kv_used = 0;
  for (int i = 0; i < n_slots(); ++i) kv_used += engine_->cache().length(i);
  std::lock_guard<std::mutex> lock(mu_);
  stats_.kv_used = kv_used;
}

}  // namespace strata
