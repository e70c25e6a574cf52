#include "runtime/step.h"

#include "runtime/speculative.h"

#include <limits>

#include <algorithm>

namespace strata {

Status PrepareKv(KvCache& cache, const Batch& batch, const std::vector<KvCopy>& copies,
                 bool* stale) {
  *stale = false;
  const int n_seq = cache.n_seq();
  for (const KvCopy& c : copies) {
    if (c.src < 0 || c.src >= n_seq || c.dst < 0 || c.dst >= n_seq || c.src == c.dst)
      return Errorf("KV copy from slot %d to slot %d is invalid (%d slots)", c.src, c.dst, n_seq);
    if (c.n < 0 || c.n > cache.n_ctx())
      return Errorf("KV copy of %d positions is out of range (context %d)", c.n, cache.n_ctx());
    if (c.n > cache.length(c.src)) {
      *stale = true;
      return Errorf(
          "KV copy of %d positions from slot %d, which holds only %d (this stage lost "
          "its KV cache)",
          c.n, c.src, cache.length(c.src));
    }
    cache.CopyPrefix(c.src, c.dst, c.n);
    cache.set_length(c.dst, c.n);
  }
  // The first position of each sequence in the batch.
  std::vector<int32_t> first(static_cast<size_t>(n_seq), -1);
  for (int i = 0; i < batch.size(); ++i) {
    const int32_t s = batch.seq[static_cast<size_t>(i)];
    if (s < 0 || s >= n_seq) return Errorf("sequence slot %d is out of range (%d slots)", s, n_seq);
    if (first[static_cast<size_t>(s)] < 0)
      first[static_cast<size_t>(s)] = batch.pos[static_cast<size_t>(i)];
  }
  for (int s = 0; s < n_seq; ++s) {
    const int32_t p = first[static_cast<size_t>(s)];
    if (p < 0) continue;
    if (p < cache.length(s)) {
      cache.set_length(s, p);
    } else if (p > cache.length(s)) {
      *stale = true;
      return Errorf(
          "slot %d holds %d positions but the batch continues at position %d (this "
          "stage lost its KV cache)",
          s, cache.length(s), p);
    }
  }
  return Status::Ok();
}

Result<Sampler*> SlotSamplers::Prepare(int seq, const SampleSpec& spec, bool* stale) {
  if (seq < 0 || seq >= static_cast<int>(samplers_.size()))
    return Errorf("sequence slot %d is out of range", seq);
  std::unique_ptr<Sampler>& s = samplers_[static_cast<size_t>(seq)];
  if (spec.reset) {
    s = std::make_unique<Sampler>(spec.params);
  } else if (s == nullptr) {
    *stale = true;
    return Errorf("slot %d has no sampler state (this stage restarted)", seq);
  }
  for (int32_t t : spec.accept) {
    if (const int32_t skip = SkippedSamples(t); skip > 0) {
      s->SkipSamples(skip);
    } else {
      s->Accept(t);
    }
  }
  return s.get();
}

Status SlotSamplers::Verify(int seq, const SampleSpec& spec, const float* logits, int32_t n_vocab,
                            std::vector<int32_t>* out, bool* stale) {
  STRATA_ASSIGN_OR_RETURN(Sampler * s, Prepare(seq, spec, stale));
  VerifyDraft(*s, logits, n_vocab, spec.draft, out);
  return Status::Ok();
}

Result<int32_t> SlotSamplers::Sample(int seq, const SampleSpec& spec, const float* logits,
                                     int32_t n_vocab, bool* stale) {
  STRATA_ASSIGN_OR_RETURN(Sampler * s, Prepare(seq, spec, stale));
  if (spec.allow) {
    const std::vector<uint64_t>& allow = *spec.allow;
    masked_.assign(logits, logits + n_vocab);
    const float ninf = -std::numeric_limits<float>::infinity();
    for (size_t w = 0; w < allow.size(); ++w) {
      const uint64_t bits = allow[w];
      if (bits == ~uint64_t{0}) continue;
      const size_t base = w * 64;
      for (size_t b = 0; b < 64 && base + b < static_cast<size_t>(n_vocab); ++b)
        if (!((bits >> b) & 1)) masked_[base + b] = ninf;
    }
    logits = masked_.data();
  }
  const int32_t id = s->Sample(logits, n_vocab);
  s->Accept(id);
  return id;
}

void SlotSamplers::Clear(int seq) {
  if (seq >= 0 && seq < static_cast<int>(samplers_.size()))
    samplers_[static_cast<size_t>(seq)].reset();
}

namespace {

// The rows of a drafted sequence: batch row *i (flagged) and the draft's rows after it. Leaves
// *i on the last of them and *row past them.
Status VerifyRows(SlotSamplers& samplers, const Batch& batch, const std::vector<SampleSpec>& specs,
                  const std::vector<float>& logits, int32_t n_vocab, int* i, size_t* row,
                  std::vector<int32_t>* tokens, bool* stale, std::vector<TokenLogprob>* logprobs,
                  bool tokens_known) {
  const SampleSpec& sp = specs[*row];
  const size_t k = sp.draft.size();
  const size_t nv = static_cast<size_t>(n_vocab);
  if (*row + k + 1 > specs.size() || (*row + k + 1) * nv > logits.size() ||
      *i + static_cast<int>(k) >= batch.size())
    return Status::Error("a draft runs past the step's rows");
  const int32_t seq = batch.seq[static_cast<size_t>(*i)];
  for (size_t j = 1; j <= k; ++j) {
    const size_t b = static_cast<size_t>(*i) + j;
    if (!specs[*row + j].drafted || !batch.output[b] || batch.seq[b] != seq ||
        (tokens_known && batch.tokens[b] != sp.draft[j - 1]))
      return Status::Error("a draft's rows do not follow its sequence's token");
  }
  std::vector<int32_t> out;
  STRATA_RETURN_IF_ERROR(samplers.Verify(seq, sp, logits.data() + *row * nv, n_vocab, &out, stale));
  for (size_t j = 0; j <= k; ++j) {
    tokens->push_back(j < out.size() ? out[j] : -1);
    if (logprobs) logprobs->push_back(TokenLogprob{});
  }
  *i += static_cast<int>(k);
  *row += k + 1;
  return Status::Ok();
}

}  // namespace

Status SampleRows(SlotSamplers& samplers, const Batch& batch, const std::vector<SampleSpec>& specs,
                  const std::vector<float>& logits, int32_t n_vocab, std::vector<int32_t>* tokens,
                  bool* stale, std::vector<TokenLogprob>* logprobs, bool tokens_known) {
  *stale = false;
  tokens->clear();
  if (logprobs) logprobs->clear();
  bool any = false;
  for (const SampleSpec& sp : specs) any = any || sp.top_logprobs >= 0;
  size_t row = 0;
  for (int i = 0; i < batch.size(); ++i) {
    if (!batch.output[static_cast<size_t>(i)]) continue;
    if (row >= specs.size()) return Status::Error("fewer sampling rows than flagged tokens");
    if ((row + 1) * static_cast<size_t>(n_vocab) > logits.size())
      return Status::Error("fewer logits rows than flagged tokens");
    if (!specs[row].draft.empty()) {
      STRATA_RETURN_IF_ERROR(VerifyRows(samplers, batch, specs, logits, n_vocab, &i, &row, tokens,
                                        stale, any ? logprobs : nullptr, tokens_known));
      continue;
    }
    STRATA_ASSIGN_OR_RETURN(
        int32_t id,
        samplers.Sample(batch.seq[static_cast<size_t>(i)], specs[row],
                        logits.data() + row * static_cast<size_t>(n_vocab), n_vocab, stale));
    tokens->push_back(id);
    if (logprobs && any) {
      const int k = specs[row].top_logprobs;
      logprobs->push_back(k < 0
                              ? TokenLogprob{}
                              : ComputeLogprobs(logits.data() + row * static_cast<size_t>(n_vocab),
                                                n_vocab, id, k));
    }
    ++row;
  }
  if (row != specs.size()) return Status::Error("more sampling rows than flagged tokens");
  return Status::Ok();
}

LocalBackend::LocalBackend(const Model& model, KvCache* cache, ThreadPool* pool)
    : model_(model), cache_(cache), forward_(model, cache, pool), samplers_(cache->n_seq()) {
  for (int i = 0; i < cache_->n_seq(); ++i) cache_->Clear(i);
}

void LocalBackend::Submit(Step step) { pending_.push_back(std::move(step)); }

StepResult LocalBackend::Next() {
  StepResult r;
  if (pending_.empty()) {
    r.status = Status::Error("no step was submitted");
    return r;
  }
  Step step = std::move(pending_.front());
  pending_.erase(pending_.begin());
  r.id = step.id;
  r.status = PrepareKv(*cache_, step.batch, step.copies, &r.stale);
  if (r.status.ok()) r.status = forward_.Run(step.batch, nullptr, &logits_);
  if (r.status.ok())
    r.status =
        SampleRows(samplers_, step.batch, step.samples, logits_,
                   static_cast<int32_t>(model_.config().n_vocab), &r.tokens, &r.stale, &r.logprobs);
  return r;
}

}  // namespace strata
