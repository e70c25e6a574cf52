#include "runtime/perplexity.h"

#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "model/testing/tiny_model.h"

namespace strata {
namespace {

// -log(exp(row[t]) / sum exp(row)), written out directly.
double DirectNll(const std::vector<double>& row, int t) {
  double z = 0;
  for (double l : row) z += std::exp(l);
  return -std::log(std::exp(row[static_cast<size_t>(t)]) / z);
}

TEST(Perplexity, TokenNllIsMinusLogSoftmax) {
  const std::vector<float> row = {1.0f, 2.0f, 3.0f, -4.0f};
  EXPECT_NEAR(TokenNll(row.data(), 4, 2), DirectNll({1, 2, 3, -4}, 2), 1e-12);
  EXPECT_NEAR(TokenNll(row.data(), 4, 3), DirectNll({1, 2, 3, -4}, 3), 1e-12);
  // Large logits: stable (the naive form overflows in float, not in this double check).
  const std::vector<float> big = {1000.0f, 999.0f};
  EXPECT_NEAR(TokenNll(big.data(), 2, 1), std::log(1 + std::exp(1.0)), 1e-9);
}

TEST(Perplexity, AccumulatesPplAndItsError) {
  // logits [3, 3]: three scored positions.
  const std::vector<float> logits = {0.5f, -1.0f, 2.0f, 3.0f, 0.0f, 0.0f, -2.0f, 1.0f, 1.5f};
  const std::vector<int32_t> next = {0, 0, 1};
  NllStats s;
  ASSERT_TRUE(AccumulateNll(logits.data(), 3, next, &s).ok());
  const double v[3] = {DirectNll({0.5, -1, 2}, 0), DirectNll({3, 0, 0}, 0),
                       DirectNll({-2, 1, 1.5}, 1)};
  const double mean = (v[0] + v[1] + v[2]) / 3;
  double var = 0;  // population variance
  for (double x : v) var += (x - mean) * (x - mean) / 3;
  EXPECT_EQ(s.count, 3);
  EXPECT_NEAR(s.nll, v[0] + v[1] + v[2], 1e-12);
  EXPECT_NEAR(s.Perplexity(), std::exp(mean), 1e-12);
  EXPECT_NEAR(s.Uncertainty(), std::exp(mean) * std::sqrt(var / 2), 1e-12);
}

TEST(Perplexity, NoErrorEstimateWithoutVariance) {
  const std::vector<float> logits = {1.0f, 1.0f, 1.0f, 1.0f};  // [2, 2], each p = 1/2
  const std::vector<int32_t> next = {0, 1};
  NllStats s;
  ASSERT_TRUE(AccumulateNll(logits.data(), 2, next, &s).ok());
  EXPECT_NEAR(s.Perplexity(), 2.0, 1e-12);
  EXPECT_LT(s.Uncertainty(), 0);
  EXPECT_EQ(NllStats().Perplexity(), 0.0);
}

TEST(Perplexity, RejectsIdsOutsideTheVocabulary) {
  const std::vector<float> logits = {1.0f, 2.0f};
  NllStats s;
  const std::vector<int32_t> bad = {2};
  EXPECT_FALSE(AccumulateNll(logits.data(), 2, bad, &s).ok());
  const std::vector<int32_t> neg = {-1};
  EXPECT_FALSE(AccumulateNll(logits.data(), 2, neg, &s).ok());
  EXPECT_EQ(s.count, 0);
}

std::unique_ptr<Engine> LoadTiny(int n_batch) {
  static const std::string path =
      testdata::TinyModelPath(testdata::MiniSpec("tiny-qwen2"), "strata_ppl_test.gguf");
  EngineOptions eo;
  eo.model_path = path;
  eo.n_ctx = 64;
  eo.threads = 2;
  eo.n_batch = n_batch;
  auto e = Engine::Load(eo);
  EXPECT_TRUE(e.ok()) << e.status().message();
  return e.ok() ? std::move(e).value() : nullptr;
}

std::vector<int32_t> SomeTokens(int n, int32_t n_vocab) {
  std::vector<int32_t> t(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) t[i] = static_cast<int32_t>((i * 7919 + 13) % n_vocab);
  return t;
}

// Every row of EvalOutputs equals the last-token logits of Eval over that prefix, across
// prompt batches of several sizes.
TEST(Perplexity, EvalOutputsGivesEveryPositionsLogits) {
  for (int n_batch : {5, 512}) {
    auto e = LoadTiny(n_batch);
    ASSERT_NE(e, nullptr);
    const int64_t V = e->model().config().n_vocab;
    const std::vector<int32_t> toks = SomeTokens(12, static_cast<int32_t>(V));
    std::vector<float> all;  // [12 - 4, V]
    ASSERT_TRUE(e->EvalOutputs(toks, 0, 4, &all).ok());
    ASSERT_EQ(all.size(), static_cast<size_t>(8 * V));
    for (int k = 4; k < 12; ++k) {
      e->cache().Clear(0);
      std::vector<float> last;
      ASSERT_TRUE(e->Eval({toks.begin(), toks.begin() + k + 1}, 0, &last).ok());
      for (int64_t v = 0; v < V; ++v)
        ASSERT_NEAR(all[static_cast<size_t>((k - 4) * V + v)], last[static_cast<size_t>(v)], 1e-3)
            << "position " << k << " batch " << n_batch;
    }
  }
}

// A chunk's score: BOS in place of the first token, positions n/2 .. n-2 predicting the next.
TEST(Perplexity, ScoresTheSecondHalfOfAChunk) {
  auto e = LoadTiny(512);
  ASSERT_NE(e, nullptr);
  const int64_t V = e->model().config().n_vocab;
  const std::vector<int32_t> chunk = SomeTokens(16, static_cast<int32_t>(V));
  const int32_t bos = 1;
  NllStats got;
  ASSERT_TRUE(ScorePerplexityChunk(*e, chunk, bos, &got).ok());
  NllStats want;
  std::vector<int32_t> run = chunk;
  run[0] = bos;
  for (int k = 8; k <= 14; ++k) {  // first = 8; row 14 predicts chunk[15]
    e->cache().Clear(0);
    std::vector<float> last;
    ASSERT_TRUE(e->Eval({run.begin(), run.begin() + k + 1}, 0, &last).ok());
    const double v = TokenNll(last.data(), V, chunk[static_cast<size_t>(k) + 1]);
    want.nll += v;
    want.nll2 += v * v;
    ++want.count;
  }
  EXPECT_EQ(got.count, 7);
  EXPECT_NEAR(got.nll, want.nll, 1e-3);
  EXPECT_NEAR(got.Perplexity(), want.Perplexity(), 1e-3 * want.Perplexity());
  // Scoring twice gives the same sums (the slot is cleared first).
  NllStats again;
  ASSERT_TRUE(ScorePerplexityChunk(*e, chunk, bos, &again).ok());
  EXPECT_DOUBLE_EQ(again.nll, got.nll);
}

}  // namespace
}  // namespace strata
