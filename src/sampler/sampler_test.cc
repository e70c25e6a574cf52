// Sampler tests: greedy, determinism, exact candidate sets of each filter, penalties,
// distribution of the draws, no allocation in steady state.
#include "sampler/sampler.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <new>
#include <set>
#include <vector>

#include "sampler/testing.h"

// Counts heap allocations so the steady-state test can assert there are none.
// (GCC flags the malloc/free pairing once these are inlined into new/delete pairs.)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
static std::atomic<long> g_allocs{0};
void* operator new(std::size_t n) {
  g_allocs.fetch_add(1, std::memory_order_relaxed);
  if (void* p = std::malloc(n ? n : 1)) return p;
  throw std::bad_alloc();
}
void* operator new[](std::size_t n) {
  g_allocs.fetch_add(1, std::memory_order_relaxed);
  if (void* p = std::malloc(n ? n : 1)) return p;
  throw std::bad_alloc();
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t) noexcept { std::free(p); }
#pragma GCC diagnostic pop

namespace strata {
namespace {

constexpr int32_t kBigVocab = 152064;  // Qwen2 vocabulary size

using testdata::PlainSampling;

// Plain sampling with the penalties: repeat, frequency and presence, over the last `last_n`.
SamplerParams Penalised(float repeat, float frequency, float presence, int32_t last_n) {
  SamplerParams p = PlainSampling();
  p.repeat_penalty = repeat;
  p.frequency_penalty = frequency;
  p.presence_penalty = presence;
  p.penalty_last_n = last_n;
  return p;
}

std::vector<int32_t> CandidateIds(const Sampler& s) {
  std::vector<int32_t> ids;
  for (const auto& [id, logit] : s.LastCandidates()) ids.push_back(id);
  return ids;
}

std::vector<float> RandomLogits(int32_t n, uint32_t seed, float scale) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, scale);
  std::vector<float> v(static_cast<size_t>(n));
  for (float& x : v) x = dist(rng);
  return v;
}

// Logits whose softmax is exactly proportional to `probs`.
std::vector<float> LogitsFromProbs(const std::vector<double>& probs) {
  std::vector<float> v;
  v.reserve(probs.size());
  for (double p : probs) v.push_back(static_cast<float>(std::log(p)));
  return v;
}

TEST(SamplerGreedy, ArgmaxWithLowestIdOnTies) {
  std::vector<float> logits = {1.0f, 5.0f, 3.0f, 5.0f, -2.0f};  // not const: see the end
  const std::vector<float> copy = logits;
  for (float t : {0.0f, -1.0f}) {
    SamplerParams p;
    p.temperature = t;
    Sampler s(p);
    EXPECT_EQ(s.Sample(logits.data(), 5), 1);
  }
  EXPECT_EQ(logits, copy);  // Sample does not modify its input
}

TEST(SamplerGreedy, AppliesPenaltiesFirst) {
  const std::vector<float> logits = {1.0f, 5.0f, 4.9f, 0.0f};
  SamplerParams p = PlainSampling();
  p.temperature = 0.0f;
  p.repeat_penalty = 1.1f;  // 5 / 1.1 = 4.545 < 4.9
  Sampler s(p);
  EXPECT_EQ(s.Sample(logits.data(), 4), 1);
  s.Accept(1);
  EXPECT_EQ(s.Sample(logits.data(), 4), 2);
  s.Reset();
  EXPECT_EQ(s.Sample(logits.data(), 4), 1);
}

TEST(SamplerGreedy, TopK1EqualsGreedy) {
  for (uint32_t trial = 0; trial < 30; ++trial) {
    std::vector<float> logits = RandomLogits(1000, trial, 2.0f);
    // Force a tie at the top in some trials: the lowest id must win both ways.
    if (trial % 3 == 0) {
      const auto it = std::max_element(logits.begin(), logits.end());
      logits[7] = *it;
      logits[900] = *it;
    }
    SamplerParams g;
    g.temperature = 0.0f;
    SamplerParams k;  // defaults otherwise (top-p 0.95, min-p 0.05, temperature 0.8)
    k.top_k = 1;
    k.seed = trial;
    Sampler greedy(g), top1(k);
    EXPECT_EQ(top1.Sample(logits.data(), 1000), greedy.Sample(logits.data(), 1000)) << trial;
    EXPECT_EQ(top1.LastCandidates().size(), 1u);
  }
}

TEST(SamplerDeterminism, SameSeedSameSequence) {
  const std::vector<float> logits = RandomLogits(100, 5, 1.0f);
  SamplerParams p;
  p.seed = 42;
  p.top_k = 0;
  Sampler a(p), b(p);
  std::vector<int32_t> first;
  std::set<int32_t> distinct;
  for (int i = 0; i < 500; ++i) {
    const int32_t x = a.Sample(logits.data(), 100);
    EXPECT_EQ(x, b.Sample(logits.data(), 100)) << i;
    first.push_back(x);
    distinct.insert(x);
  }
  EXPECT_GT(distinct.size(), 10u);  // really sampling, not a constant
  a.Reset();
  for (int i = 0; i < 500; ++i) ASSERT_EQ(a.Sample(logits.data(), 100), first[i]) << i;
}

// A continuation: accepting k earlier tokens and skipping k samples leaves the sampler
// exactly where k Sample()+Accept() rounds left it (penalties and random stream), for every
// cut point, with the penalties on, for greedy (no draws) and sampled requests.
TEST(SamplerDeterminism, SkipSamplesResumesTheRandomStream) {
  for (float temp : {0.0f, 0.8f, 1.5f}) {
    SamplerParams p;
    p.seed = 1234;
    p.temperature = temp;
    p.top_k = 20;
    p.repeat_penalty = 1.1f;
    p.presence_penalty = 0.3f;
    p.frequency_penalty = 0.2f;
    constexpr int kSteps = 40;
    std::vector<std::vector<float>> logits;
    logits.reserve(kSteps);
    for (int i = 0; i < kSteps; ++i) logits.push_back(RandomLogits(64, 100 + i, 2.0f));
    const std::vector<int32_t> prompt = {3, 5, 7};
    Sampler full(p);
    for (int32_t t : prompt) full.Accept(t);
    std::vector<int32_t> ref;
    for (int i = 0; i < kSteps; ++i) {
      ref.push_back(full.Sample(logits[i].data(), 64));
      full.Accept(ref.back());
    }
    std::set<int32_t> distinct(ref.begin(), ref.end());
    if (temp > 0) EXPECT_GT(distinct.size(), 5u);
    for (int k = 0; k < kSteps; ++k) {
      Sampler cont(p);
      for (int32_t t : prompt) cont.Accept(t);
      for (int i = 0; i < k; ++i) cont.Accept(ref[i]);
      cont.SkipSamples(k);
      for (int i = k; i < kSteps; ++i) {
        const int32_t x = cont.Sample(logits[i].data(), 64);
        ASSERT_EQ(x, ref[i]) << "temperature " << temp << " cut " << k << " step " << i;
        cont.Accept(x);
      }
    }
    if (temp > 0) {
      // Not skipping (or skipping one too many) does change the continuation.
      int differs = 0;
      for (int k = 1; k < kSteps; k += 3) {
        for (int extra : {-1, 1}) {
          Sampler cont(p);
          for (int32_t t : prompt) cont.Accept(t);
          for (int i = 0; i < k; ++i) cont.Accept(ref[i]);
          cont.SkipSamples(k + extra);
          bool same = true;
          for (int i = k; i < kSteps; ++i) {
            const int32_t x = cont.Sample(logits[i].data(), 64);
            same = same && x == ref[i];
            cont.Accept(x);
          }
          differs += !same;
        }
      }
      EXPECT_GT(differs, 10);
    }
  }
}

TEST(SamplerDeterminism, DifferentSeedsDiffer) {
  const std::vector<float> logits(50, 0.0f);  // uniform over 50 tokens
  const std::vector<uint64_t> seeds = {
      1, 2, 3, 4, 5, 6, 7, 8, 0xFFFFFFFFu, 0x1'0000'0001ull};  // high half matters too
  std::vector<std::vector<int32_t>> seqs;
  for (uint64_t seed : seeds) {
    SamplerParams p = PlainSampling();
    p.seed = seed;
    Sampler s(p);
    std::vector<int32_t> seq(200);
    for (int32_t& id : seq) id = s.Sample(logits.data(), 50);
    seqs.push_back(seq);
  }
  for (size_t i = 0; i < seqs.size(); ++i) {
    for (size_t j = i + 1; j < seqs.size(); ++j) {
      int same = 0;
      for (size_t k = 0; k < 200; ++k) same += seqs[i][k] == seqs[j][k];
      // Independent draws agree on ~200/50 = 4 positions; identical streams on 200.
      EXPECT_LT(same, 20) << "seeds " << seeds[i] << " and " << seeds[j];
    }
  }
}

TEST(SamplerFilters, TopKKeepsTheKBest) {
  const std::vector<float> logits = {0.5f, 3.0f, -1.0f, 2.0f, 2.0f, 7.0f, 2.0f};
  SamplerParams p = PlainSampling();
  p.top_k = 3;
  Sampler s(p);
  s.Sample(logits.data(), 7);
  EXPECT_EQ(CandidateIds(s), (std::vector<int32_t>{1, 3, 5}));  // tie at 2.0: lowest id
  p.top_k = 100;                                                // larger than the vocabulary: no-op
  Sampler all(p);
  all.Sample(logits.data(), 7);
  EXPECT_EQ(all.LastCandidates().size(), 7u);
}

// Token probabilities: id 0: .05, 1: .40, 2: .10, 3: .30, 4: .15.
const std::vector<double> kProbs = {0.05, 0.40, 0.10, 0.30, 0.15};

TEST(SamplerFilters, TopPKeepsSmallestPrefixReachingP) {
  const std::vector<float> logits = LogitsFromProbs(kProbs);
  struct Case {
    float top_p;
    int32_t top_k;
    std::vector<int32_t> want;
  };
  const std::vector<Case> cases = {
      {0.35f, 0, {1}},
      {0.69f, 0, {1, 3}},     // .40 + .30 = .70 >= .69
      {0.71f, 0, {1, 3, 4}},  // needs .15 more
      {0.80f, 0, {1, 3, 4}},  // .85 >= .80
      {0.90f, 0, {1, 2, 3, 4}},
      {1.00f, 0, {0, 1, 2, 3, 4}},  // off
      // After top-k=3 the mass renormalises over {1,3,4}: .40/.85 + .30/.85 = .82 >= .80.
      {0.80f, 3, {1, 3}},
  };
  for (const Case& c : cases) {
    SamplerParams p = PlainSampling();
    p.top_p = c.top_p;
    p.top_k = c.top_k;
    Sampler s(p);
    const int32_t tok = s.Sample(logits.data(), 5);
    EXPECT_EQ(CandidateIds(s), c.want) << "top_p " << c.top_p << " top_k " << c.top_k;
    EXPECT_TRUE(std::count(c.want.begin(), c.want.end(), tok)) << tok;
  }
}

TEST(SamplerFilters, MinPKeepsTokensAboveFractionOfBest) {
  const std::vector<float> logits = LogitsFromProbs(kProbs);
  struct Case {
    float min_p;
    std::vector<int32_t> want;
  };
  const std::vector<Case> cases = {
      {0.30f, {1, 3, 4}},     // p >= .12
      {0.20f, {1, 2, 3, 4}},  // p >= .08
      {0.74f, {1, 3}},        // p >= .296
      {1.00f, {1}},
      {2.00f, {1}},  // nothing qualifies: the best token stays
      {0.00f, {0, 1, 2, 3, 4}},
  };
  for (const Case& c : cases) {
    for (int32_t top_k : {0, 4}) {  // unsorted and sorted paths
      SamplerParams p = PlainSampling();
      p.min_p = c.min_p;
      p.top_k = top_k;
      Sampler s(p);
      s.Sample(logits.data(), 5);
      std::vector<int32_t> want = c.want;
      if (top_k == 4) want.erase(std::remove(want.begin(), want.end(), 0), want.end());
      EXPECT_EQ(CandidateIds(s), want) << "min_p " << c.min_p << " top_k " << top_k;
    }
  }
}

TEST(SamplerFilters, TemperatureScalesSurvivingLogits) {
  const std::vector<float> logits = {1.0f, -2.0f, 0.5f};
  SamplerParams p = PlainSampling();
  p.temperature = 0.5f;
  Sampler s(p);
  s.Sample(logits.data(), 3);
  const auto c = s.LastCandidates();
  ASSERT_EQ(c.size(), 3u);
  for (const auto& [id, logit] : c) EXPECT_FLOAT_EQ(logit, logits[id] * 2.0f);
}

// Reference top-p / min-p by a full sort, with the same arithmetic as the sampler.
std::set<int32_t> ReferenceFilter(const std::vector<float>& logits, float top_p, float min_p) {
  std::vector<int32_t> order(logits.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = static_cast<int32_t>(i);
  std::sort(order.begin(), order.end(), [&](int32_t a, int32_t b) {
    return logits[a] > logits[b] || (logits[a] == logits[b] && a < b);
  });
  const float max_logit = logits[order[0]];
  size_t size = order.size();
  if (top_p < 1.0f) {
    double sum = 0.0;
    for (float l : logits) sum += std::exp(l - max_logit);
    double cum = 0.0;
    for (size_t i = 0; i < order.size(); ++i) {
      cum += std::exp(logits[order[i]] - max_logit);
      if (cum >= top_p * sum) {
        size = i + 1;
        break;
      }
    }
  }
  if (min_p > 0.0f) {
    const float threshold = max_logit + std::log(min_p);
    size_t keep = 1;
    while (keep < size && logits[order[keep]] >= threshold) ++keep;
    size = keep;
  }
  return std::set<int32_t>(order.begin(), order.begin() + static_cast<std::ptrdiff_t>(size));
}

TEST(SamplerFilters, LargeVocabMatchesFullSortReference) {
  struct Case {
    float top_p, min_p, scale;
  };
  for (const Case& c : std::vector<Case>{{0.95f, 0.0f, 3.0f},
                                         {0.5f, 0.0f, 1.0f},  // flat: many candidates
                                         {1.0f, 0.05f, 2.0f},
                                         {0.9f, 0.02f, 2.0f},
                                         {0.5f, 0.0005f, 1.0f},   // top-p cuts first
                                         {0.99f, 0.2f, 3.0f}}) {  // min-p cuts first
    const std::vector<float> logits = RandomLogits(kBigVocab, 77, c.scale);
    SamplerParams p = PlainSampling();
    p.top_p = c.top_p;
    p.min_p = c.min_p;
    Sampler s(p);
    const int32_t tok = s.Sample(logits.data(), kBigVocab);
    const std::vector<int32_t> got = CandidateIds(s);
    const std::set<int32_t> want = ReferenceFilter(logits, c.top_p, c.min_p);
    EXPECT_EQ(std::set<int32_t>(got.begin(), got.end()), want)
        << "top_p " << c.top_p << " min_p " << c.min_p;
    EXPECT_TRUE(want.count(tok));
    EXPECT_GT(want.size(), 1u);
    EXPECT_LT(want.size(), static_cast<size_t>(kBigVocab));
  }
}

TEST(SamplerPenalties, ChangeExactlyThePenalisedTokens) {
  const std::vector<float> logits = {0.5f, -1.0f, 2.0f, 0.0f, 1.5f, -0.5f, 3.0f, -2.0f, 1.0f, 4.0f};
  Sampler s(Penalised(1.3f, 0.2f, 0.5f, 4));
  auto check = [&](const std::vector<int32_t>& window) {
    s.Sample(logits.data(), 10);
    const auto cands = s.LastCandidates();
    ASSERT_EQ(cands.size(), 10u);
    for (const auto& [id, logit] : cands) {
      const int count = static_cast<int>(std::count(window.begin(), window.end(), id));
      float want = logits[id];
      if (count > 0) {
        want = want <= 0.0f ? want * 1.3f : want / 1.3f;
        want -= count * 0.2f + 0.5f;
      }
      EXPECT_FLOAT_EQ(logit, want) << "token " << id;
    }
  };
  for (int32_t t : {9, 2, 5, 2, 7}) s.Accept(t);
  check({2, 5, 2, 7});  // 9 fell out of the last 4
  s.Accept(-3);         // ignored
  s.Accept(1000000);    // outside this vocabulary: takes a window slot, touches no logit
  check({5, 2, 7, 1000000});
}

TEST(SamplerPenalties, CountsRepeatsInWindow) {
  const std::vector<float> logits = {2.0f, -1.0f, 0.0f};
  SamplerParams p = Penalised(2.0f, 0.25f, 1.0f, 8);
  Sampler s(p);
  for (int32_t t : {0, 0, 0, 1}) s.Accept(t);
  s.Sample(logits.data(), 3);
  const auto c = s.LastCandidates();
  EXPECT_FLOAT_EQ(c[0].second, 2.0f / 2.0f - 3 * 0.25f - 1.0f);
  EXPECT_FLOAT_EQ(c[1].second, -1.0f * 2.0f - 0.25f - 1.0f);
  EXPECT_FLOAT_EQ(c[2].second, 0.0f);
  // Sampling twice does not compound the penalty.
  s.Sample(logits.data(), 3);
  EXPECT_FLOAT_EQ(s.LastCandidates()[0].second, 2.0f / 2.0f - 3 * 0.25f - 1.0f);

  p.penalty_last_n = 0;  // off
  Sampler off(p);
  for (int32_t t : {0, 0, 0, 1}) off.Accept(t);
  off.Sample(logits.data(), 3);
  for (const auto& [id, logit] : off.LastCandidates()) EXPECT_EQ(logit, logits[id]);
}

// Chi-square statistic of observed counts against expected probabilities.
double ChiSquare(const std::vector<int>& counts, const std::vector<double>& probs, int n) {
  double chi2 = 0.0;
  for (size_t i = 0; i < counts.size(); ++i) {
    const double e = probs[i] * n;
    if (e == 0.0) {
      EXPECT_EQ(counts[i], 0) << "token " << i << " has zero probability";
      continue;
    }
    chi2 += (counts[i] - e) * (counts[i] - e) / e;
  }
  return chi2;
}

std::vector<double> Softmax(const std::vector<float>& logits, float temperature) {
  std::vector<double> p;
  double mx = -INFINITY, sum = 0.0;
  for (float l : logits) mx = std::max(mx, static_cast<double>(l) / temperature);
  for (float l : logits) {
    p.push_back(std::exp(l / temperature - mx));
    sum += p.back();
  }
  for (double& x : p) x /= sum;
  return p;
}

TEST(SamplerDistribution, MatchesSoftmaxAtTemperatureOne) {
  const std::vector<float> logits = {0.0f, 1.0f, -0.5f, 2.0f, 0.3f, -3.0f};
  const std::vector<double> probs = Softmax(logits, 1.0f);
  SamplerParams p = PlainSampling();
  p.seed = 123;
  Sampler s(p);
  const int n = 60000;
  std::vector<int> counts(6, 0);
  for (int i = 0; i < n; ++i) ++counts[static_cast<size_t>(s.Sample(logits.data(), 6))];
  // 5 degrees of freedom: P(chi2 > 25) ~ 1.4e-4. A skewed draw (e.g. off by 3% on one
  // token) lands far above this.
  EXPECT_LT(ChiSquare(counts, probs, n), 25.0);
}

TEST(SamplerDistribution, TopKAndTemperatureRenormalise) {
  const std::vector<float> logits = {0.0f, 1.0f, -0.5f, 2.0f, 0.3f, -3.0f};
  // top-k 4 keeps {3, 1, 4, 0}; temperature 0.7 sharpens them.
  std::vector<float> kept = logits;
  for (int id : {2, 5}) kept[static_cast<size_t>(id)] = -INFINITY;
  const std::vector<double> probs = Softmax(kept, 0.7f);
  SamplerParams p = PlainSampling();
  p.top_k = 4;
  p.temperature = 0.7f;
  p.seed = 9;
  Sampler s(p);
  const int n = 60000;
  std::vector<int> counts(6, 0);
  for (int i = 0; i < n; ++i) ++counts[static_cast<size_t>(s.Sample(logits.data(), 6))];
  EXPECT_LT(ChiSquare(counts, probs, n), 22.0);  // 3 dof: P(chi2 > 22) ~ 6.5e-5
}

TEST(SamplerPerformance, NoAllocationInSteadyStateAndFast) {
  const std::vector<float> logits = RandomLogits(kBigVocab, 3, 2.5f);
  SamplerParams defaults;
  defaults.repeat_penalty = 1.1f;
  SamplerParams no_top_k = defaults;
  no_top_k.top_k = 0;
  for (const SamplerParams& p : {defaults, no_top_k}) {
    Sampler s(p);
    for (int32_t t = 0; t < 100; ++t) s.Accept(t * 997);
    s.Sample(logits.data(), kBigVocab);  // warm-up: sizes cand_
    const auto start = std::chrono::steady_clock::now();
    const long before = g_allocs.load();
    for (int i = 0; i < 50; ++i) s.Sample(logits.data(), kBigVocab);
    const long allocs = g_allocs.load() - before;
    const double ms =
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
    EXPECT_EQ(allocs, 0) << "top_k " << p.top_k;
    // ~1 ms per call in a release build; generous for sanitizer builds and a busy host.
    EXPECT_LT(ms / 50, 100.0) << "top_k " << p.top_k;
    std::printf("top_k=%d: %.3f ms per Sample over %d tokens\n", p.top_k, ms / 50, kBigVocab);
  }
}

TEST(SamplerEdgeCases, DegenerateLogits) {
  SamplerParams p;
  Sampler s(p);
  const float ninf = -INFINITY;
  const std::vector<float> all_masked = {ninf, ninf, ninf};
  EXPECT_EQ(s.Sample(all_masked.data(), 3), 0);
  const std::vector<float> one_left = {ninf, ninf, 0.0f, ninf};
  for (int i = 0; i < 20; ++i) EXPECT_EQ(s.Sample(one_left.data(), 4), 2);
  const std::vector<float> with_nan = {NAN, 1.0f, NAN};
  for (int i = 0; i < 20; ++i) EXPECT_EQ(s.Sample(with_nan.data(), 3), 1);
  EXPECT_EQ(s.Sample(one_left.data(), 0), -1);
}

}  // namespace
}  // namespace strata

namespace strata {
namespace {

TEST(Logprobs, LogSoftmaxOfRawLogitsAndTopK) {
  const std::vector<float> logits = {1.0f, 3.0f, 2.0f, 3.0f, -1.0f};
  double z = 0;
  for (float l : logits) z += std::exp(static_cast<double>(l));
  const TokenLogprob t = ComputeLogprobs(logits.data(), 5, 2, 3);
  EXPECT_EQ(t.id, 2);
  EXPECT_NEAR(t.logprob, 2.0 - std::log(z), 1e-6);
  ASSERT_EQ(t.top.size(), 3u);
  EXPECT_EQ(t.top[0].first, 1);  // ties: lower id first
  EXPECT_EQ(t.top[1].first, 3);
  EXPECT_EQ(t.top[2].first, 2);
  EXPECT_NEAR(t.top[0].second, 3.0 - std::log(z), 1e-6);
  EXPECT_TRUE(ComputeLogprobs(logits.data(), 5, 4, 0).top.empty());
  EXPECT_EQ(ComputeLogprobs(logits.data(), 5, 0, 20).top.size(), 5u);
}

}  // namespace
}  // namespace strata
