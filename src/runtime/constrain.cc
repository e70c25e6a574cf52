// The Scheduler's reasoning and constraint bookkeeping: where the thinking block ends, the
// thinking budget, and the token masks of constrained requests (computed off the loop thread
// so that a mask not cached yet delays only its own sequence, not the batch).
#include <algorithm>
#include <chrono>

#include "runtime/scheduler.h"

namespace strata {

namespace {
constexpr std::string_view kThinkClose = "</think>";
}  // namespace

bool Scheduler::Track(Slot& s, int32_t id) {
  const SchedRequestParams& p = s.req->params_;
  if (s.thinking) {
    bool closes = !p.think_close.empty() && id == p.think_close.back();
    if (!closes && !tok_.IsEog(id)) {
      s.think_tail += tok_.TokenToPiece(id);
      closes = s.think_tail.find(kThinkClose) != std::string::npos;
      if (s.think_tail.size() > kThinkClose.size())
        s.think_tail.erase(0, s.think_tail.size() - kThinkClose.size());
    }
    if (closes) {
      s.thinking = false;
      s.forced.clear();
      PrefetchMask(s);
      return true;
    }
    s.n_thinking++;
    if (p.thinking_budget >= 0 && s.n_thinking >= p.thinking_budget) SpendBudget(s);
    return true;
  }
  if (!p.constraint) return true;
  if (!p.constraint->AcceptToken(id)) return false;
  PrefetchMask(s);
  return true;
}

void Scheduler::SpendBudget(Slot& s) {
  const SchedRequestParams& p = s.req->params_;
  if (!s.thinking || !s.forced.empty() || p.think_close.empty()) return;
  if (p.thinking_budget < 0 || s.n_thinking < p.thinking_budget) return;
  s.forced.assign(p.think_close.begin(), p.think_close.end());
}

void Scheduler::PrefetchMask(Slot& s) {
  if (!Constrained(s)) return;
  const grammar::Matcher& m = *s.req->params_.constraint;
  if (m.finished() || m.MaskReady()) return;
  if (s.mask_job.valid()) s.mask_job.wait();
  // The automaton and the state, not the matcher: the loop thread goes on using that.
  s.mask_job = std::async(std::launch::async,
                          [a = m.shared_automaton(), st = m.state()] { return a->Mask(st); });
}

bool Scheduler::MaskPending(Slot& s) {
  return s.mask_job.valid() &&
         s.mask_job.wait_for(std::chrono::seconds(0)) != std::future_status::ready;
}

std::shared_ptr<const std::vector<uint64_t>> Scheduler::Allowed(Slot& s) {
  const SchedRequestParams& p = s.req->params_;
  if (!s.forced.empty()) return nullptr;  // the sample is replaced anyway
  if (Constrained(s)) {
    std::shared_ptr<const grammar::TokenMask> m;
    if (s.mask_job.valid()) m = s.mask_job.get();  // (the one for the current state)
    if (!m) m = p.constraint->Mask();
    if (!p.ignore_eos || !p.constraint->CanContinue()) return m;
    auto copy = std::make_shared<std::vector<uint64_t>>(*m);
    for (int32_t id : tok_.eog_ids())
      (*copy)[static_cast<size_t>(id) >> 6] &= ~(uint64_t{1} << (id & 63));
    return copy;
  }
  if (!p.ignore_eos) return nullptr;
  if (!no_eog_) {
    auto all = std::make_shared<std::vector<uint64_t>>(
        (static_cast<size_t>(tok_.n_vocab()) + 63) / 64, ~uint64_t{0});
    for (int32_t id : tok_.eog_ids())
      (*all)[static_cast<size_t>(id) >> 6] &= ~(uint64_t{1} << (id & 63));
    no_eog_ = std::move(all);
  }
  return no_eog_;
}

}  // namespace strata
