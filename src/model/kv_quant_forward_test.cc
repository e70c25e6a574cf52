// The forward pass over a quantized KV cache (Q8_0 / Q4_0 keys and values): logits stay close
// to the F16 cache's, Q8_0 closer than Q4_0; a cache that cannot hold the model's heads in
// whole blocks is refused; prefix copies carry quantized rows.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "base/thread_pool.h"
#include "model/forward.h"
#include "model/kv_cache.h"
#include "model/testing/tiny_model.h"
#include "model/weights.h"

namespace strata {
namespace {

const std::string& ModelPath() {
  static const std::string path = [] {
    testdata::TinyModelSpec s = testdata::MiniSpec("tiny-qwen2");
    s.n_heads = 2;  // head size 32: whole Q8_0 / Q4_0 blocks per head
    s.n_kv_heads = 1;
    s.seed = 5;
    return testdata::TinyModelPath(s, "strata_kv_quant_forward_test.gguf");
  }();
  return path;
}

// Logits of a 40-token prompt's last 8 positions (then 8 single-token steps) in slot 1, the
// prompt's first 16 positions copied from slot 0.
std::vector<float> RunLogits(const Model& m, DType kt, DType vt) {
  auto cache = KvCache::Create(m.config().n_layers, 2, 64, m.config().kv_dim(), kt, vt);
  EXPECT_TRUE(cache.ok()) << cache.status().message();
  ThreadPool pool(2);
  Forward fwd(m, &cache.value(), &pool);
  std::vector<int32_t> prompt(40);
  for (int i = 0; i < 40; ++i) prompt[i] = 3 + (i * 37) % 200;
  Batch b;
  for (int i = 0; i < 16; ++i) b.Add(prompt[i], i, 0, false);
  std::vector<float> out, all;
  EXPECT_TRUE(fwd.Run(b, nullptr, &out).ok());
  cache->CopyPrefix(0, 1, 16);
  b.Clear();
  for (int i = 16; i < 40; ++i) b.Add(prompt[i], i, 1, i >= 32);
  EXPECT_TRUE(fwd.Run(b, nullptr, &out).ok());
  all = out;
  for (int s = 0; s < 8; ++s) {
    b.Clear();
    b.Add(5 + s, 40 + s, 1, true);
    EXPECT_TRUE(fwd.Run(b, nullptr, &out).ok());
    all.insert(all.end(), out.begin(), out.end());
  }
  return all;
}

double RelRms(const std::vector<float>& a, const std::vector<float>& b) {
  double num = 0, den = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    num += (double{a[i]} - b[i]) * (double{a[i]} - b[i]);
    den += double{b[i]} * b[i];
  }
  return std::sqrt(num / den);
}

TEST(KvQuantForward, LogitsStayCloseToF16) {
  auto m = Model::Load(ModelPath());
  ASSERT_TRUE(m.ok()) << m.status().message();
  const std::vector<float> f16 = RunLogits(**m, DType::F16, DType::F16);
  const std::vector<float> q8 = RunLogits(**m, DType::Q8_0, DType::Q8_0);
  const std::vector<float> q4 = RunLogits(**m, DType::Q4_0, DType::Q4_0);
  const std::vector<float> mixed = RunLogits(**m, DType::Q8_0, DType::F16);
  ASSERT_EQ(f16.size(), q8.size());
  ASSERT_EQ(f16.size(), q4.size());
  const double e8 = RelRms(q8, f16), e4 = RelRms(q4, f16), em = RelRms(mixed, f16);
  EXPECT_GT(e8, 0.0);  // really quantized
  EXPECT_LT(e8, 0.02);
  EXPECT_LT(em, 0.02);
  EXPECT_LT(e4, 0.15);
  EXPECT_LT(e8, e4);
  // The F16 cache through the same entry points is today's: a second run is bit-identical.
  EXPECT_EQ(f16, RunLogits(**m, DType::F16, DType::F16));
}

// Decode deep into a context (>= kernels::kSplitKvMinKv positions: split-KV attention) for
// each cache type: the logits of slot 0's last 3 steps, with `threads` threads, alone or
// decoded together with a second sequence (slot 1, a shorter context).
std::vector<float> LongDecode(const Model& m, DType kv, int threads, bool with_other) {
  const int n = 560;
  auto cache = KvCache::Create(m.config().n_layers, 2, 600, m.config().kv_dim(), kv, kv);
  EXPECT_TRUE(cache.ok()) << cache.status().message();
  ThreadPool pool(threads);
  Forward fwd(m, &cache.value(), &pool);
  Batch b;
  for (int i = 0; i < n - 3; ++i) b.Add(3 + (i * 53) % 250, i, 0, false);
  if (with_other)
    for (int i = 0; i < 40; ++i) b.Add(7 + (i * 31) % 250, i, 1, false);
  std::vector<float> out, all;
  EXPECT_TRUE(fwd.Run(b, nullptr, &out).ok());
  for (int i = n - 3; i < n; ++i) {
    b.Clear();
    if (with_other) b.Add(9, 40 + i - (n - 3), 1, true);
    b.Add(3 + (i * 53) % 250, i, 0, true);
    EXPECT_TRUE(fwd.Run(b, nullptr, &out).ok());
    const size_t V = static_cast<size_t>(m.config().n_vocab);
    all.insert(all.end(), out.end() - static_cast<std::ptrdiff_t>(V), out.end());
  }
  return all;
}

TEST(KvQuantForward, SplitKvDecodeIgnoresThreadsAndBatch) {
  auto m = Model::Load(ModelPath());
  ASSERT_TRUE(m.ok()) << m.status().message();
  std::vector<float> f16;
  for (DType kv : {DType::F16, DType::Q8_0, DType::Q4_0}) {
    const std::vector<float> want = LongDecode(**m, kv, 1, false);
    EXPECT_EQ(want, LongDecode(**m, kv, 3, false)) << DTypeName(kv);
    EXPECT_EQ(want, LongDecode(**m, kv, 2, true)) << DTypeName(kv);
    if (kv == DType::F16) f16 = want;
    else EXPECT_LT(RelRms(want, f16), kv == DType::Q8_0 ? 0.02 : 0.15) << DTypeName(kv);
  }
}

TEST(KvQuantForward, RefusesHeadsThatAreNotWholeBlocks) {
  EXPECT_FALSE(KvCache::CheckTypes(DType::Q8_0, DType::F16, 16).ok());
  EXPECT_FALSE(KvCache::CheckTypes(DType::F16, DType::Q4_0, 48).ok());
  EXPECT_FALSE(KvCache::CheckTypes(DType::Q4_K, DType::F16, 256).ok());
  EXPECT_TRUE(KvCache::CheckTypes(DType::Q8_0, DType::Q4_0, 128).ok());
  EXPECT_TRUE(KvCache::CheckTypes(DType::F16, DType::F16, 16).ok());
  EXPECT_FALSE(ParseKvType("q5_1").ok());
  EXPECT_EQ(ParseKvType("Q8_0").value(), DType::Q8_0);
  // Memory: Q8_0 is 34 / 64 of F16, Q4_0 18 / 64.
  const uint64_t f16 = KvCache::BytesFor(28, 4, 4096, 256, DType::F16, DType::F16);
  EXPECT_EQ(KvCache::BytesFor(28, 4, 4096, 256, DType::Q8_0, DType::Q8_0) * 64, f16 * 34);
  EXPECT_EQ(KvCache::BytesFor(28, 4, 4096, 256, DType::Q4_0, DType::Q4_0) * 64, f16 * 18);
  auto c = KvCache::Create(2, 1, 8, 256, DType::Q8_0, DType::Q4_0);
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->bytes(), KvCache::BytesFor(2, 1, 8, 256, DType::Q8_0, DType::Q4_0));
}

}  // namespace
}  // namespace strata
