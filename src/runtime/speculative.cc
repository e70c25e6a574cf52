#include "runtime/speculative.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "kernels/kernels.h"
#include "runtime/step.h"

namespace strata {

double ProbOf(const SparseDist& d, int32_t id) {
  for (const auto& [t, p] : d)
    if (t == id) return p;
  return 0.0;
}

bool AcceptDraft(double p_x, double q_x, double u) {
  if (q_x <= 0.0) return false;  // the draft could not have proposed it
  return u < std::min(1.0, p_x / q_x);
}

int32_t ResampleResidual(const SparseDist& p, const SparseDist& q, double u) {
  double mass = 0.0;
  for (const auto& [t, pt] : p) mass += std::max(0.0, pt - ProbOf(q, t));
  const bool residual = mass > 0.0;
  if (!residual)
    for (const auto& e : p) mass += e.second;
  const double target = u * mass;
  double cum = 0.0;
  int32_t last = p.empty() ? -1 : p.front().first;
  for (const auto& [t, pt] : p) {
    const double w = residual ? std::max(0.0, pt - ProbOf(q, t)) : pt;
    if (w <= 0.0) continue;
    last = t;
    cum += w;
    if (target < cum) return t;
  }
  return last;
}

void VerifyDraft(Sampler& sampler, const float* logits, int32_t n_vocab,
                 const std::vector<int32_t>& draft, std::vector<int32_t>* out) {
  SparseDist p;
  const size_t row = static_cast<size_t>(n_vocab);
  for (size_t j = 0; j < draft.size(); ++j) {
    const float* l = logits + j * row;
    sampler.Distribution(l, n_vocab, &p);
    const int32_t x = draft[j];
    const SparseDist q{{x, 1.0}};  // a deterministic draft
    if (AcceptDraft(ProbOf(p, x), 1.0, sampler.Draw01())) {
      sampler.Accept(x);
      out->push_back(x);
      continue;
    }
    const int32_t id = ResampleResidual(p, q, sampler.Draw01());
    sampler.Accept(id);
    out->push_back(id);
    return;
  }
  const int32_t id = sampler.Sample(logits + draft.size() * row, n_vocab);  // all accepted
  sampler.Accept(id);
  out->push_back(id);
}

std::vector<int32_t> NgramLookup(const std::vector<int32_t>& seq, int n_max, int max) {
  std::vector<int32_t> out;
  const int len = static_cast<int>(seq.size());
  if (max <= 0) return out;
  for (int n = std::min(n_max, len - 1); n >= 1; --n) {
    const int32_t* suffix = seq.data() + (len - n);
    // The latest earlier occurrence: it starts at i < len - n.
    for (int i = len - n - 1; i >= 0; --i) {
      if (std::memcmp(seq.data() + i, suffix, static_cast<size_t>(n) * sizeof(int32_t)) != 0)
        continue;
      const int from = i + n;
      const int to = std::min(len, from + max);
      out.assign(seq.begin() + from, seq.begin() + to);
      return out;
    }
  }
  return out;
}

Status NgramDrafter::Draft(std::vector<DraftJob>* jobs) {
  std::vector<int32_t> seq;
  for (DraftJob& j : *jobs) {
    seq.assign(j.context->begin(), j.context->end());
    seq.push_back(j.last);
    j.out = NgramLookup(seq, n_max_, j.max);
  }
  return Status::Ok();
}

// ---- ModelDrafter ----

namespace {

// The argmax of a logits row and, when p_min > 0 asks for it, its softmax probability (1
// otherwise). The row is scratch: the softmax runs in place (the vector kernel: a row is up to
// the whole vocabulary, for every drafted token).
std::pair<int32_t, double> Best(float* l, int32_t n, float p_min) {
  int32_t best = 0;
  for (int32_t i = 1; i < n; ++i)
    if (l[i] > l[best]) best = i;
  if (p_min <= 0.0f) return {best, 1.0};
  kernels::Softmax(l, n);
  return {best, l[best]};
}

}  // namespace

Result<std::unique_ptr<ModelDrafter>> ModelDrafter::Create(std::unique_ptr<Model> draft, int n_seq,
                                                           int n_ctx, int n_batch, float p_min,
                                                           ThreadPool* pool, int64_t vocab) {
  const ModelConfig& c = draft->config();
  STRATA_ASSIGN_OR_RETURN(KvCache cache, KvCache::Create(c.n_layers, n_seq, n_ctx, c.kv_dim()));
  auto d = std::unique_ptr<ModelDrafter>(
      new ModelDrafter(std::move(draft), std::move(cache), n_batch, p_min, pool));
  STRATA_RETURN_IF_ERROR(d->forward_.set_head_rows(vocab).With("--draft-vocab"));
  return d;
}

ModelDrafter::ModelDrafter(std::unique_ptr<Model> model, KvCache cache, int n_batch, float p_min,
                           ThreadPool* pool)
    : model_(std::move(model)),
      cache_(std::move(cache)),
      forward_(*model_, &cache_, pool),
      n_batch_(std::max(1, n_batch)),
      p_min_(p_min),
      held_(static_cast<size_t>(cache_.n_seq())) {
  for (int i = 0; i < cache_.n_seq(); ++i) cache_.Clear(i);
}

void ModelDrafter::Forget(const std::vector<DraftJob>& jobs) {
  for (const DraftJob& j : jobs) held_[static_cast<size_t>(j.slot)].clear();
}

Status ModelDrafter::CatchUp(std::vector<DraftJob>* jobs, std::vector<std::vector<int32_t>>* want) {
  const size_t nv = static_cast<size_t>(forward_.head_rows());
  std::vector<size_t> pos(jobs->size());
  for (size_t k = 0; k < jobs->size(); ++k) {
    const DraftJob& j = (*jobs)[k];
    std::vector<int32_t>& w = (*want)[k];
    w.assign(j.context->begin(), j.context->end());
    w.push_back(j.last);
    const std::vector<int32_t>& held = held_[static_cast<size_t>(j.slot)];
    size_t common = 0;
    while (common < held.size() && common < w.size() && held[common] == w[common]) ++common;
    pos[k] = std::min(common, w.size() - 1);  // the last one runs again for its logits
  }
  rows_.assign(jobs->size() * nv, 0.0f);
  for (;;) {
    Batch b;
    std::vector<size_t> out_job;
    int budget = n_batch_;
    for (size_t k = 0; k < jobs->size() && budget > 0; ++k) {
      const std::vector<int32_t>& w = (*want)[k];
      const size_t m = std::min(w.size() - pos[k], static_cast<size_t>(budget));
      for (size_t i = 0; i < m; ++i) {
        const bool last = pos[k] + i + 1 == w.size();
        b.Add(w[pos[k] + i], static_cast<int32_t>(pos[k] + i), (*jobs)[k].slot, last);
        if (last) out_job.push_back(k);
      }
      pos[k] += m;
      budget -= static_cast<int>(m);
    }
    if (b.size() == 0) break;
    bool stale = false;
    STRATA_RETURN_IF_ERROR(PrepareKv(cache_, b, {}, &stale));
    STRATA_RETURN_IF_ERROR(forward_.Run(b, nullptr, &logits_));
    for (size_t r = 0; r < out_job.size(); ++r)
      std::memcpy(rows_.data() + out_job[r] * nv, logits_.data() + r * nv, nv * sizeof(float));
  }
  for (size_t k = 0; k < jobs->size(); ++k)
    held_[static_cast<size_t>((*jobs)[k].slot)] = (*want)[k];
  return Status::Ok();
}

Status ModelDrafter::Draft(std::vector<DraftJob>* jobs) {
  const int32_t nv = static_cast<int32_t>(forward_.head_rows());
  std::vector<std::vector<int32_t>> want(jobs->size());
  for (DraftJob& j : *jobs) j.out.clear();
  Status st = CatchUp(jobs, &want);
  std::vector<uint8_t> active(jobs->size(), 1);
  while (st.ok()) {
    Batch b;
    std::vector<size_t> fed;
    for (size_t k = 0; k < jobs->size(); ++k) {
      DraftJob& j = (*jobs)[k];
      if (!active[k]) continue;
      const auto [x, px] = Best(rows_.data() + k * static_cast<size_t>(nv), nv, p_min_);
      if (static_cast<int>(j.out.size()) >= j.max || px < p_min_) {
        active[k] = 0;
        continue;
      }
      j.out.push_back(x);
      if (static_cast<int>(j.out.size()) >= j.max) {
        active[k] = 0;
        continue;
      }
      const std::vector<int32_t>& held = held_[static_cast<size_t>(j.slot)];
      b.Add(x, static_cast<int32_t>(held.size()), j.slot, true);
      fed.push_back(k);
    }
    if (fed.empty()) break;
    bool stale = false;
    st = PrepareKv(cache_, b, {}, &stale);
    if (st.ok()) st = forward_.Run(b, nullptr, &logits_);
    if (!st.ok()) break;
    for (size_t r = 0; r < fed.size(); ++r) {
      const size_t k = fed[r];
      std::memcpy(rows_.data() + k * static_cast<size_t>(nv),
                  logits_.data() + r * static_cast<size_t>(nv),
                  static_cast<size_t>(nv) * sizeof(float));
      held_[static_cast<size_t>((*jobs)[k].slot)].push_back(b.tokens[r]);
    }
  }
  if (!st.ok()) {
    Forget(*jobs);
    for (DraftJob& j : *jobs) j.out.clear();
  }
  return st;
}

}  // namespace strata
