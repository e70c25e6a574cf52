// Sampler chain: penalties -> top-k -> top-p -> min-p -> temperature -> softmax -> draw.
//
// cand_ holds one entry per vocabulary token and is reused across calls (no allocation
// in steady state). Each filter shrinks the live prefix cand_[0, size); `sorted` says
// whether that prefix is ordered by (logit desc, id asc). Top-k uses nth_element + a sort
// of the k survivors; top-p without top-k sorts only as many of the best candidates as
// it needs, in growing chunks (after a min-p cut, see Sample); min-p partitions when
// unsorted.
#include "sampler/sampler.h"

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <limits>

namespace strata {
namespace {

constexpr float kNegInf = -std::numeric_limits<float>::infinity();
constexpr unsigned long long kDrawsPerSample = 2;  // 32-bit outputs per Uniform01()

// Strict weak order: higher logit first, lower id on ties (deterministic everywhere).
template <typename C>
bool Better(const C& a, const C& b) {
  return a.logit > b.logit || (a.logit == b.logit && a.id < b.id);
}

}  // namespace

Sampler::Sampler(const SamplerParams& params) : params_(params) { Seed(); }

void Sampler::Seed() {
  // seed_seq's output and mt19937 are fully specified by the standard, so a seed gives
  // the same draws on every platform. Both halves of the 64-bit seed matter.
  std::seed_seq seq{static_cast<uint32_t>(params_.seed & 0xFFFFFFFFu),
                    static_cast<uint32_t>(params_.seed >> 32)};
  rng_.seed(seq);
}

void Sampler::Reset() {
  history_.clear();
  std::fill(counts_.begin(), counts_.end(), 0);
  n_cand_ = 0;
  Seed();
}

void Sampler::SkipSamples(int64_t n) {
  // Mirrors Sample(): only a temperature draw consumes the generator, through Uniform01().
  if (n <= 0 || params_.temperature <= 0.0f) return;
  rng_.discard(static_cast<unsigned long long>(n) * kDrawsPerSample);
}

void Sampler::Accept(int32_t token) {
  // Ids outside any real vocabulary (negative, or absurdly large) can't be penalised.
  constexpr int32_t kMaxTokenId = 1 << 26;
  if (params_.penalty_last_n == 0 || token < 0 || token >= kMaxTokenId) return;
  if (static_cast<size_t>(token) >= counts_.size()) {
    counts_.resize(static_cast<size_t>(token) + 1, 0);
  }
  history_.push_back(token);
  ++counts_[static_cast<size_t>(token)];
  if (params_.penalty_last_n > 0 && history_.size() > static_cast<size_t>(params_.penalty_last_n)) {
    --counts_[static_cast<size_t>(history_.front())];
    history_.pop_front();
  }
}

// Keep in sync with SkipSamples(): the generator outputs one Uniform01() consumes.
double Sampler::Uniform01() {
  // 53 random bits from two 32-bit outputs -> [0, 1).
  const uint64_t a = rng_() >> 5;  // 27 bits
  const uint64_t b = rng_() >> 6;  // 26 bits
  return static_cast<double>((a << 26) | b) * (1.0 / 9007199254740992.0);
}

// Repeat penalty divides positive logits and multiplies non-positive ones; frequency and
// presence penalties subtract count*freq and presence. Applied once per distinct token
// of the window: counts_ is negated while a token is done, then restored.
void Sampler::ApplyPenalties(int32_t n_vocab) {
  const SamplerParams& p = params_;
  if (history_.empty() ||
      (p.repeat_penalty == 1.0f && p.frequency_penalty == 0.0f && p.presence_penalty == 0.0f)) {
    return;
  }
  for (int32_t t : history_) {
    if (t >= n_vocab) continue;
    int32_t& c = counts_[static_cast<size_t>(t)];
    if (c <= 0) continue;                                // already penalised
    float& logit = cand_[static_cast<size_t>(t)].logit;  // cand_[i].id == i here
    logit = logit <= 0.0f ? logit * p.repeat_penalty : logit / p.repeat_penalty;
    logit -= static_cast<float>(c) * p.frequency_penalty + p.presence_penalty;
    c = -c;
  }
  for (int32_t t : history_) {
    if (t >= n_vocab) continue;
    int32_t& c = counts_[static_cast<size_t>(t)];
    if (c < 0) c = -c;
  }
}

int32_t Sampler::Greedy(int32_t n_vocab) {
  int32_t best = 0;
  for (int32_t i = 1; i < n_vocab; ++i) {
    if (cand_[static_cast<size_t>(i)].logit > cand_[static_cast<size_t>(best)].logit) best = i;
  }
  return best;
}

void Sampler::TopK(size_t* size, bool* sorted) {
  const int32_t k = params_.top_k;
  if (k <= 0 || static_cast<size_t>(k) >= *size) return;
  auto first = cand_.begin();
  auto kth = first + k;
  std::nth_element(first, kth, first + static_cast<std::ptrdiff_t>(*size), Better<Candidate>);
  std::sort(first, kth, Better<Candidate>);
  *size = static_cast<size_t>(k);
  *sorted = true;
}

// Keeps the smallest prefix (by probability, descending) whose mass reaches top_p.
// The probabilities are over cand_[0, mass_size); only cand_[0, *size) is ordered and
// walked (*size < mass_size when min-p already cut the tail, see Sample).
void Sampler::TopP(size_t* size, bool* sorted, size_t mass_size) {
  const float top_p = params_.top_p;
  if (top_p >= 1.0f || mass_size <= 1) return;
  const size_t n = *size;
  float max_logit = kNegInf;
  for (size_t i = 0; i < n; ++i) max_logit = std::max(max_logit, cand_[i].logit);
  double sum = 0.0;
  for (size_t i = 0; i < mass_size; ++i) {
    cand_[i].p = std::exp(cand_[i].logit - max_logit);
    sum += cand_[i].p;
  }
  const double target = static_cast<double>(top_p) * sum;
  double cum = 0.0;
  size_t done = 0;  // cand_[0, done) is in final order
  if (*sorted) done = n;
  size_t chunk = 64;
  auto first = cand_.begin();
  for (size_t i = 0; i < n; ++i) {
    if (i == done) {
      // Bring the next best `chunk` candidates into order.
      const size_t next = std::min(n, done + chunk);
      if (next < n) {
        std::nth_element(first + static_cast<std::ptrdiff_t>(done),
                         first + static_cast<std::ptrdiff_t>(next),
                         first + static_cast<std::ptrdiff_t>(n), Better<Candidate>);
      }
      std::sort(first + static_cast<std::ptrdiff_t>(done),
                first + static_cast<std::ptrdiff_t>(next), Better<Candidate>);
      done = next;
      chunk *= 2;
    }
    cum += cand_[i].p;
    if (cum >= target) {
      *size = i + 1;
      *sorted = true;
      return;
    }
  }
  *sorted = true;  // rounding kept everything; the loop ordered all of it
}

// Keeps tokens whose probability is at least min_p times the best one's:
// logit >= max_logit + log(min_p). The best token always stays.
void Sampler::MinP(size_t* size, bool* sorted) {
  const float min_p = params_.min_p;
  if (min_p <= 0.0f || *size <= 1) return;
  const size_t n = *size;
  if (*sorted) {
    const float threshold = cand_[0].logit + std::log(min_p);
    size_t keep = 1;
    while (keep < n && cand_[keep].logit >= threshold) ++keep;
    *size = keep;
    return;
  }
  size_t best = 0;
  for (size_t i = 1; i < n; ++i) {
    if (Better(cand_[i], cand_[best])) best = i;
  }
  std::swap(cand_[0], cand_[best]);
  const float threshold = cand_[0].logit + std::log(min_p);
  auto first = cand_.begin();
  auto mid = std::partition(first + 1, first + static_cast<std::ptrdiff_t>(n),
                            [threshold](const Candidate& c) { return c.logit >= threshold; });
  *size = static_cast<size_t>(mid - first);
}

// Penalties, filters and temperature: the greedy pick (returned, with *size 0) or -1 with
// cand_[0, *size) weighted by unnormalised probabilities summing to *sum.
int32_t Sampler::Weigh(const float* logits, int32_t n_vocab, size_t* size, double* sum) {
  const size_t n = static_cast<size_t>(n_vocab);
  cand_.resize(n);  // capacity is kept: no allocation once the vocab size was seen
  for (size_t i = 0; i < n; ++i) {
    const float l = logits[i];
    cand_[i] = Candidate{static_cast<int32_t>(i), std::isnan(l) ? kNegInf : l, 0.0f};
  }
  ApplyPenalties(n_vocab);

  const int32_t best = Greedy(n_vocab);
  const float best_logit = cand_[static_cast<size_t>(best)].logit;
  *size = 0;
  *sum = 0;
  if (params_.temperature <= 0.0f || !std::isfinite(best_logit)) {
    // Greedy, or degenerate logits (all -inf, or +inf present) that softmax can't weigh.
    n_cand_ = n;
    return best;
  }

  size_t kept = n;
  bool sorted = false;
  TopK(&kept, &sorted);
  const size_t mass_size = kept;
  if (!sorted && params_.top_p < 1.0f && params_.min_p > 0.0f) {
    // Top-p and min-p each keep a prefix of the sorted order, so min-p then top-p gives
    // the same set as top-p then min-p as long as top-p weighs the whole set. Cutting
    // with min-p first (a linear partition) spares ordering a long tail.
    MinP(&kept, &sorted);
  }
  TopP(&kept, &sorted, mass_size);
  MinP(&kept, &sorted);
  n_cand_ = kept;

  const float inv_t = 1.0f / params_.temperature;
  float max_logit = kNegInf;
  for (size_t i = 0; i < kept; ++i) {
    cand_[i].logit *= inv_t;
    max_logit = std::max(max_logit, cand_[i].logit);
  }
  double total = 0.0;
  for (size_t i = 0; i < kept; ++i) {
    cand_[i].p = std::exp(cand_[i].logit - max_logit);
    total += cand_[i].p;
  }
  *size = kept;
  *sum = total;
  return -1;
}

int32_t Sampler::Sample(const float* logits, int32_t n_vocab) {
  if (n_vocab <= 0) return -1;
  size_t size = 0;
  double sum = 0;
  const int32_t greedy = Weigh(logits, n_vocab, &size, &sum);
  if (greedy >= 0) return greedy;
  const double u = Uniform01() * sum;
  double cum = 0.0;
  for (size_t i = 0; i < size; ++i) {
    cum += cand_[i].p;
    if (u < cum) return cand_[i].id;
  }
  // Rounding left u at the very top: the last candidate with nonzero mass.
  for (size_t i = size; i-- > 0;) {
    if (cand_[i].p > 0.0f) return cand_[i].id;
  }
  return cand_[0].id;
}

void Sampler::Distribution(const float* logits, int32_t n_vocab,
                           std::vector<std::pair<int32_t, double>>* out) {
  out->clear();
  if (n_vocab <= 0) return;
  size_t size = 0;
  double sum = 0;
  const int32_t greedy = Weigh(logits, n_vocab, &size, &sum);
  if (greedy >= 0 || !(sum > 0)) {
    out->emplace_back(greedy >= 0 ? greedy : cand_[0].id, 1.0);
    return;
  }
  out->reserve(size);
  for (size_t i = 0; i < size; ++i)
    if (cand_[i].p > 0.0f) out->emplace_back(cand_[i].id, cand_[i].p / sum);
}

double Sampler::Draw01() { return params_.temperature > 0.0f ? Uniform01() : 0.0; }

std::vector<std::pair<int32_t, float>> Sampler::LastCandidates() const {
  std::vector<std::pair<int32_t, float>> out;
  const size_t n = std::min(n_cand_, cand_.size());
  out.reserve(n);
  for (size_t i = 0; i < n; ++i) out.emplace_back(cand_[i].id, cand_[i].logit);
  std::sort(out.begin(), out.end());
  return out;
}

TokenLogprob ComputeLogprobs(const float* logits, int32_t n_vocab, int32_t id, int k) {
  TokenLogprob out;
  out.id = id;
  if (n_vocab <= 0) return out;
  float max = logits[0];
  for (int32_t i = 1; i < n_vocab; ++i) max = std::max(max, logits[i]);
  double sum = 0;
  for (int32_t i = 0; i < n_vocab; ++i) sum += std::exp(static_cast<double>(logits[i] - max));
  const double log_z = static_cast<double>(max) + std::log(sum);
  auto lp = [&](int32_t i) { return static_cast<float>(logits[i] - log_z); };
  if (id >= 0 && id < n_vocab) out.logprob = lp(id);
  k = std::min(k, static_cast<int>(n_vocab));
  if (k <= 0) return out;
  // The k best by a min-heap on (logit, -id): higher logit first, lower id on ties.
  auto worse = [&](int32_t a, int32_t b) {
    return logits[a] > logits[b] || (logits[a] == logits[b] && a < b);
  };
  std::vector<int32_t> heap;
  heap.reserve(static_cast<size_t>(k) + 1);
  for (int32_t i = 0; i < n_vocab; ++i) {
    if (static_cast<int>(heap.size()) < k) {
      heap.push_back(i);
      std::push_heap(heap.begin(), heap.end(), worse);
    } else if (worse(i, heap.front())) {
      std::pop_heap(heap.begin(), heap.end(), worse);
      heap.back() = i;
      std::push_heap(heap.begin(), heap.end(), worse);
    }
  }
  std::sort(heap.begin(), heap.end(), worse);
  for (int32_t i : heap) out.top.emplace_back(i, lp(i));
  return out;
}

}  // namespace strata
