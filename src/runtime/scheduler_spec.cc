// The Scheduler's side of speculative decoding (runtime/speculative.h): which sequences draft,
// how their drafts enter a step, and what an accepted draft leaves in the slot.
#include <algorithm>
#include <chrono>

#include "base/log.h"
#include "runtime/scheduler.h"

namespace strata {

bool Scheduler::SpecOk(const Slot& s) const {
  // Masks, forced tokens and log-probabilities act per sampled row; a draft would bypass them.
  const SchedRequestParams& p = s.req->params_;
  return !p.constraint && !p.ignore_eos && p.top_logprobs < 0 && s.forced.empty() &&
         !(s.thinking && p.thinking_budget >= 0);
}

std::vector<std::vector<int32_t>> Scheduler::Drafts(int max_seqs, int budget) {
  std::vector<std::vector<int32_t>> drafts(static_cast<size_t>(n_slots()));
  if (!opts_.drafter || opts_.spec.draft_max <= 0) return drafts;
  const int running = static_cast<int>(
      std::count_if(slots_.begin(), slots_.end(), [](const Slot& s) { return s.req != nullptr; }));
  const int limit = opts_.spec.max_seqs > 0 ? opts_.spec.max_seqs : std::max(1, n_slots() / 2);
  if (running > limit) {  // a full batch already reads the weights for many tokens
    std::lock_guard<std::mutex> lock(mu_);
    stats_.spec_paused++;
    return drafts;
  }
  std::vector<DraftJob> jobs;
  int decoding = 0;
  for (const Slot& s : slots_)
    if (s.req && !s.in_flight && s.pending >= 0) ++decoding;
  const int spare = std::max(0, budget - decoding);
  const int each = decoding > 0 ? spare / decoding : 0;
  for (int i = 0; i < n_slots() && static_cast<int>(jobs.size()) < max_seqs; ++i) {
    const Slot& s = slots_[static_cast<size_t>(i)];
    if (!s.req || s.in_flight || s.pending < 0 || !SpecOk(s)) continue;
    const int left = s.req->params_.max_tokens - s.n_generated - 1;
    const int room = n_ctx() - 1 - static_cast<int>(s.tokens.size());
    const int max = std::min({opts_.spec.draft_max, left, room, each});
    if (max < std::max(1, opts_.spec.draft_min)) continue;
    DraftJob j;
    j.slot = i;
    j.context = &s.tokens;
    j.last = s.pending;
    j.max = max;
    jobs.push_back(std::move(j));
  }
  if (jobs.empty()) return drafts;
  const auto t0 = std::chrono::steady_clock::now();
  const Status st = opts_.drafter->Draft(&jobs);
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  {
    std::lock_guard<std::mutex> lock(mu_);
    stats_.spec_draft_seconds += secs;
  }
  if (!st.ok()) {  // decoding goes on without drafts
    STRATA_LOG(LogLevel::kWarn, "speculative decoding: drafting failed: %s", st.message().c_str());
    return drafts;
  }
  for (DraftJob& j : jobs)
    if (static_cast<int>(j.out.size()) >= std::max(1, opts_.spec.draft_min))
      drafts[static_cast<size_t>(j.slot)] = std::move(j.out);
  return drafts;
}

void Scheduler::AddDecode(int i, SampleSpec sp, const std::vector<int32_t>& draft, Step* step,
                          InFlight* f) {
  Slot& s = slots_[static_cast<size_t>(i)];
  const int32_t pos = static_cast<int32_t>(s.tokens.size());
  step->batch.Add(s.pending, pos, i, true);
  f->is_draft.push_back(0);
  sp.draft = draft;
  step->samples.push_back(std::move(sp));
  f->row_slot.push_back(i);
  f->row_draft.push_back(-1);
  for (size_t j = 0; j < draft.size(); ++j) {
    step->batch.Add(draft[j], pos + 1 + static_cast<int32_t>(j), i, true);
    f->is_draft.push_back(1);
    SampleSpec ph;
    ph.drafted = true;
    step->samples.push_back(std::move(ph));
    f->row_slot.push_back(i);
    f->row_draft.push_back(draft[j]);
  }
  if (!draft.empty()) {
    std::lock_guard<std::mutex> lock(mu_);
    stats_.spec_drafted += draft.size();
    stats_.spec_verified++;
  }
}

bool Scheduler::KeepDrafted(Slot& s, int32_t drafted, int32_t emitted) {
  // The row's token counts only when every drafted token before it was accepted: then the
  // last emitted token (pending) is this row's drafted one, and its keys/values hold.
  if (emitted < 0 || s.pending != drafted) return false;
  s.tokens.push_back(drafted);
  s.pending = -1;
  std::lock_guard<std::mutex> lock(mu_);
  stats_.spec_accepted++;
  return true;
}

}  // namespace strata
