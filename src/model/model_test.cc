// Forward pass tests: against an independent double-precision reference written here from
// the architecture's definition, layer-range splits, batching, and input validation.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <random>

#include "base/fp16.h"
#include "model/forward.h"
#include "model/testing/tiny_model.h"
#include "tensor/quant.h"

namespace strata {
namespace {

std::string TinyModel(const std::string& arch, DType type, bool tied = false) {
  testdata::TinyModelSpec s = testdata::MiniSpec(arch == "llama" ? "tiny-llama" : "tiny-qwen2");
  s.tied = tied;
  s.type = type;
  s.seed = 7;
  return testdata::TinyModelPath(
      s, "strata_model_test_" + arch + "_" + DTypeName(type) + (tied ? "_tied" : "") + ".gguf");
}

// Straightforward double-precision transformer: the definition the engine must match.
// K and V are rounded to f16 as the cache stores them.
class Reference {
 public:
  explicit Reference(const Model& m) : m_(m), c_(m.config()) {}

  std::vector<double> Mat(const Matrix& w, const std::vector<double>& x) {
    std::vector<double> y(static_cast<size_t>(w.rows));
    std::vector<float> row(static_cast<size_t>(w.cols));
    for (int64_t r = 0; r < w.rows; ++r) {
      DequantizeMatrixRow(w, r, row.data());
      double s = 0;
      for (int64_t i = 0; i < w.cols; ++i) s += static_cast<double>(row[i]) * x[i];
      y[r] = s;
    }
    return y;
  }
  std::vector<double> Norm(const std::vector<double>& x, const std::vector<float>& w) {
    double ss = 0;
    for (double v : x) ss += v * v;
    const double scale = 1.0 / std::sqrt(ss / static_cast<double>(x.size()) + c_.rms_eps);
    std::vector<double> y(x.size());
    for (size_t i = 0; i < x.size(); ++i) y[i] = x[i] * scale * w[i];
    return y;
  }
  void Rope(std::vector<double>& v, int n_heads, int pos) {
    const int d = c_.head_dim;
    for (int h = 0; h < n_heads; ++h) {
      for (int i = 0; i < d / 2; ++i) {
        double theta = pos * std::pow(static_cast<double>(c_.rope_base), -2.0 * i / d);
        if (!m_.rope_factors().empty()) theta /= m_.rope_factors()[static_cast<size_t>(i)];
        const int a = c_.rope_neox ? i : 2 * i;
        const int b = c_.rope_neox ? i + d / 2 : 2 * i + 1;
        double& x0 = v[static_cast<size_t>(h) * d + a];
        double& x1 = v[static_cast<size_t>(h) * d + b];
        const double y0 = x0 * std::cos(theta) - x1 * std::sin(theta);
        const double y1 = x0 * std::sin(theta) + x1 * std::cos(theta);
        x0 = y0;
        x1 = y1;
      }
    }
  }
  static double F16(double v) { return fp16_to_f32(f32_to_fp16(static_cast<float>(v))); }

  // Logits of the last token of `tokens`.
  std::vector<double> Logits(const std::vector<int32_t>& tokens) {
    const int n = static_cast<int>(tokens.size());
    const int64_t H = c_.hidden;
    std::vector<std::vector<double>> x(static_cast<size_t>(n));
    std::vector<float> row(static_cast<size_t>(H));
    for (int t = 0; t < n; ++t) {
      DequantizeMatrixRow(m_.tok_embd(), tokens[static_cast<size_t>(t)], row.data());
      x[static_cast<size_t>(t)].assign(row.begin(), row.end());
    }
    const int hd = c_.head_dim, group = c_.n_heads / c_.n_kv_heads;
    for (int il = 0; il < c_.n_layers; ++il) {
      const LayerWeights& L = m_.layer(il);
      std::vector<std::vector<double>> K(static_cast<size_t>(n)), V(static_cast<size_t>(n)),
          Q(static_cast<size_t>(n));
      for (int t = 0; t < n; ++t) {
        auto xn = Norm(x[static_cast<size_t>(t)], L.attn_norm);
        Q[t] = Mat(L.wq, xn);
        K[t] = Mat(L.wk, xn);
        V[t] = Mat(L.wv, xn);
        for (size_t i = 0; i < L.bq.size(); ++i) Q[t][i] += L.bq[i];
        for (size_t i = 0; i < L.bk.size(); ++i) K[t][i] += L.bk[i];
        for (size_t i = 0; i < L.bv.size(); ++i) V[t][i] += L.bv[i];
        Rope(Q[t], c_.n_heads, t);
        Rope(K[t], c_.n_kv_heads, t);
        for (double& v : K[t]) v = F16(v);
        for (double& v : V[t]) v = F16(v);
      }
      for (int t = 0; t < n; ++t) {
        std::vector<double> att(static_cast<size_t>(c_.q_dim()), 0.0);
        for (int h = 0; h < c_.n_heads; ++h) {
          const int kvh = h / group;
          std::vector<double> s(static_cast<size_t>(t + 1));
          double mx = -1e300;
          for (int j = 0; j <= t; ++j) {
            double d = 0;
            for (int i = 0; i < hd; ++i) d += Q[t][h * hd + i] * K[j][kvh * hd + i];
            s[j] = d / std::sqrt(static_cast<double>(hd));
            mx = std::max(mx, s[j]);
          }
          double sum = 0;
          for (double& v : s) sum += (v = std::exp(v - mx));
          for (int j = 0; j <= t; ++j)
            for (int i = 0; i < hd; ++i) att[h * hd + i] += s[j] / sum * V[j][kvh * hd + i];
        }
        auto o = Mat(L.wo, att);
        for (int64_t i = 0; i < H; ++i) x[t][i] += o[i];
        auto xn = Norm(x[t], L.ffn_norm);
        auto g = Mat(L.w_gate, xn), u = Mat(L.w_up, xn);
        for (size_t i = 0; i < g.size(); ++i) g[i] = g[i] / (1.0 + std::exp(-g[i])) * u[i];
        auto d = Mat(L.w_down, g);
        for (int64_t i = 0; i < H; ++i) x[t][i] += d[i];
      }
    }
    return Mat(m_.output(), Norm(x[static_cast<size_t>(n - 1)], m_.output_norm()));
  }

 private:
  const Model& m_;
  const ModelConfig& c_;
};

// `tokens` at positions 0.. of sequence 0, the last one's logits wanted.
Batch PromptBatch(const std::vector<int32_t>& tokens) {
  Batch b;
  for (size_t i = 0; i < tokens.size(); ++i)
    b.Add(tokens[i], static_cast<int>(i), 0, i + 1 == tokens.size());
  return b;
}

std::vector<float> EngineLogits(const Model& m, const std::vector<int32_t>& tokens, int threads) {
  auto cache = KvCache::Create(m.config().n_layers, 1, 64, m.config().kv_dim()).value();
  ThreadPool pool(threads);
  Forward fwd(m, &cache, &pool);
  std::vector<float> out;
  Status st = fwd.Run(PromptBatch(tokens), nullptr, &out);
  EXPECT_TRUE(st.ok()) << st.message();
  return out;
}

// The logits of `tokens` through two pipeline stages: `a` (the first layers) hands its hidden
// states to `b` (the rest).
std::vector<float> TwoStageLogits(const Model& a, const Model& b,
                                  const std::vector<int32_t>& tokens) {
  auto ca = KvCache::Create(a.last_layer() - a.first_layer(), 1, 64, a.config().kv_dim()).value();
  auto cb = KvCache::Create(b.last_layer() - b.first_layer(), 1, 64, b.config().kv_dim()).value();
  ThreadPool pool(2);
  Forward fa(a, &ca, &pool), fb(b, &cb, &pool);
  const Batch batch = PromptBatch(tokens);
  std::vector<float> hidden, logits;
  Status st = fa.Run(batch, nullptr, &hidden);
  EXPECT_TRUE(st.ok()) << st.message();
  EXPECT_EQ(hidden.size(), tokens.size() * a.config().hidden);
  if (st.ok()) st = fb.Run(batch, hidden.data(), &logits);
  EXPECT_TRUE(st.ok()) << st.message();
  return logits;
}

class ForwardVsReference : public ::testing::TestWithParam<std::tuple<std::string, DType>> {};

TEST_P(ForwardVsReference, LogitsMatch) {
  const auto [arch, type] = GetParam();
  auto m = Model::Load(TinyModel(arch, type));
  ASSERT_TRUE(m.ok()) << m.status().message();
  const std::vector<int32_t> tokens = {1, 450, 4996, 17354, 1701, 29871, 13, 2};
  auto ref = Reference(*m.value()).Logits(tokens);
  auto got = EngineLogits(*m.value(), tokens, 2);
  ASSERT_EQ(got.size(), ref.size());
  double max_abs = 0, max_diff = 0;
  for (size_t i = 0; i < ref.size(); ++i) {
    max_abs = std::max(max_abs, std::fabs(ref[i]));
    max_diff = std::max(max_diff, std::fabs(ref[i] - got[i]));
  }
  // F32 weights: only rounding separates the two, mostly the f16 running sum of attention
  // (llama.cpp's numerics). Narrower types also quantize the activations (as llama.cpp does),
  // which the reference does not.
  const double tol = type == DType::F32 ? 1.5e-3 : type == DType::F16 ? 5e-3 : 5e-2;
  EXPECT_LT(max_diff, tol * max_abs) << "max |logit| " << max_abs;
  EXPECT_GT(max_abs, 1.0);  // the model is not degenerate
}

INSTANTIATE_TEST_SUITE_P(Types, ForwardVsReference,
                         ::testing::Combine(::testing::Values("qwen2", "llama"),
                                            ::testing::Values(DType::F32, DType::F16, DType::BF16,
                                                              DType::Q8_0)));

TEST(Forward, LayerRangesComposeBitIdentically) {
  for (const char* arch : {"qwen2", "llama"}) {
    const std::string path = TinyModel(arch, DType::Q8_0);
    auto full = Model::Load(path).value();
    const int L = full->config().n_layers;
    const std::vector<int32_t> tokens = {1, 15043, 3186, 29991, 1724, 338};
    auto want = EngineLogits(*full, tokens, 2);
    for (int k = 1; k < L; ++k) {
      auto a = Model::Load(path, 0, k).value();
      auto b = Model::Load(path, k, L).value();
      EXPECT_FALSE(a->has_head());
      EXPECT_FALSE(b->has_embedding());
      const std::vector<float> logits = TwoStageLogits(*a, *b, tokens);
      ASSERT_EQ(logits.size(), want.size());
      EXPECT_EQ(0, std::memcmp(logits.data(), want.data(), want.size() * sizeof(float)))
          << arch << " split at " << k;
    }
  }
}

TEST(Forward, RangeBindsOnlyItsTensors) {
  const std::string path = TinyModel("qwen2", DType::F16);
  auto full = Model::Load(path).value();
  auto mid = Model::Load(path, 1, 2).value();
  EXPECT_LT(mid->bound_weight_bytes() * 3, full->bound_weight_bytes());
  EXPECT_FALSE(Model::Load(path, 2, 1).ok());
  EXPECT_FALSE(Model::Load(path, 0, 9).ok());
}

TEST(Forward, BatchedSequencesMatchSeparateRuns) {
  auto m = Model::Load(TinyModel("llama", DType::Q8_0)).value();
  const std::vector<int32_t> a = {1, 306, 763, 274, 1446}, b = {1, 910, 338};
  auto want_a = EngineLogits(*m, a, 1), want_b = EngineLogits(*m, b, 1);
  auto cache = KvCache::Create(m->config().n_layers, 2, 32, m->config().kv_dim()).value();
  ThreadPool pool(2);
  Forward fwd(*m, &cache, &pool);
  // Prefill both prompts but the last token of each in one batch, then decode both together.
  Batch batch;
  for (size_t i = 0; i + 1 < a.size(); ++i) batch.Add(a[i], static_cast<int>(i), 0, false);
  for (size_t i = 0; i + 1 < b.size(); ++i) batch.Add(b[i], static_cast<int>(i), 1, false);
  std::vector<float> out;
  ASSERT_TRUE(fwd.Run(batch, nullptr, &out).ok());
  EXPECT_TRUE(out.empty());
  batch.Clear();
  batch.Add(b.back(), static_cast<int>(b.size() - 1), 1, true);
  batch.Add(a.back(), static_cast<int>(a.size() - 1), 0, true);
  ASSERT_TRUE(fwd.Run(batch, nullptr, &out).ok());
  const size_t V = static_cast<size_t>(m->config().n_vocab);
  ASSERT_EQ(out.size(), 2 * V);
  for (size_t i = 0; i < V; ++i) {
    EXPECT_NEAR(out[i], want_b[i], 1e-3 + 1e-4 * std::fabs(want_b[i]));
    EXPECT_NEAR(out[V + i], want_a[i], 1e-3 + 1e-4 * std::fabs(want_a[i]));
  }
  EXPECT_EQ(cache.length(0), 5);
  EXPECT_EQ(cache.length(1), 3);
}

// Decode steps that see >= kernels::kSplitKvMinKv positions run split-KV attention (chunked
// partials merged in chunk order): still the reference's logits.
TEST(Forward, LongContextDecodeMatchesReference) {
  auto m = Model::Load(TinyModel("qwen2", DType::F32)).value();
  std::vector<int32_t> tokens(530);
  for (int i = 0; i < 530; ++i) tokens[i] = 3 + (i * 97) % 1000;
  auto cache = KvCache::Create(m->config().n_layers, 1, 540, m->config().kv_dim()).value();
  ThreadPool pool(2);
  Forward fwd(*m, &cache, &pool);
  Batch b;
  for (size_t i = 0; i + 2 < tokens.size(); ++i) b.Add(tokens[i], static_cast<int>(i), 0, false);
  std::vector<float> got;
  ASSERT_TRUE(fwd.Run(b, nullptr, &got).ok());
  for (size_t i = tokens.size() - 2; i < tokens.size(); ++i) {
    b.Clear();
    b.Add(tokens[i], static_cast<int>(i), 0, true);
    ASSERT_TRUE(fwd.Run(b, nullptr, &got).ok());
  }
  auto ref = Reference(*m).Logits(tokens);
  ASSERT_EQ(got.size(), ref.size());
  double max_abs = 0, max_diff = 0;
  for (size_t i = 0; i < ref.size(); ++i) {
    max_abs = std::max(max_abs, std::fabs(ref[i]));
    max_diff = std::max(max_diff, std::fabs(ref[i] - got[i]));
  }
  EXPECT_LT(max_diff, 1.5e-3 * max_abs) << "max |logit| " << max_abs;
}

// set_head_rows (a speculative draft's smaller head): logits rows of that width, equal to the
// first ids of the full head's, for plain, block and repacked (Q4_0) output weights.
TEST(Forward, HeadRowsScoreThePrefixOfTheVocabulary) {
  for (DType t : {DType::F32, DType::Q8_0, DType::Q4_0}) {
    auto m = Model::Load(TinyModel("qwen2", t)).value();
    const std::vector<int32_t> tokens = {1, 306, 763, 274};
    std::vector<float> full, part;
    for (int64_t rows : {int64_t{0}, int64_t{128}}) {
      auto cache = KvCache::Create(m->config().n_layers, 1, 16, m->config().kv_dim()).value();
      ThreadPool pool(2);
      Forward fwd(*m, &cache, &pool);
      ASSERT_TRUE(fwd.set_head_rows(rows).ok());
      EXPECT_FALSE(fwd.set_head_rows(100).ok());  // off the 64-row step: refused, unchanged
      EXPECT_EQ(fwd.head_rows(), rows == 0 ? m->config().n_vocab : rows);
      Batch b;
      for (size_t i = 0; i < tokens.size(); ++i)
        b.Add(tokens[i], static_cast<int>(i), 0, i + 1 == tokens.size());
      ASSERT_TRUE(fwd.Run(b, nullptr, rows == 0 ? &full : &part).ok());
    }
    ASSERT_EQ(full.size(), static_cast<size_t>(m->config().n_vocab)) << DTypeName(t);
    ASSERT_EQ(part.size(), 128u) << DTypeName(t);
    for (size_t i = 0; i < part.size(); ++i)
      ASSERT_EQ(part[i], full[i]) << DTypeName(t) << " " << i;
  }
}

TEST(Forward, TiedOutputUsesEmbedding) {
  auto m = Model::Load(TinyModel("qwen2", DType::F32, true));
  ASSERT_TRUE(m.ok()) << m.status().message();
  EXPECT_EQ(m.value()->output().data, m.value()->tok_embd().data);
  auto ref = Reference(*m.value()).Logits({1, 2, 3});
  auto got = EngineLogits(*m.value(), {1, 2, 3}, 2);
  for (size_t i = 0; i < ref.size(); i += 97)
    EXPECT_NEAR(got[i], ref[i], 1e-2 + 1e-4 * std::fabs(ref[i]));
}

// The copy into huge pages holds the same bytes: the logits stay bit-identical, for a whole
// model, a tied head, and both halves of a split (the embedding of a head-less range and the
// head of an embedding-less one).
TEST(Forward, HugePageCopyKeepsLogitsBitIdentical) {
  const std::vector<int32_t> tokens = {1, 15043, 3186, 29991};
  for (bool tied : {false, true}) {
    const std::string path = TinyModel("qwen2", DType::Q8_0, tied);
    auto mapped = Model::Load(path).value();
    auto copied = Model::Load(path).value();
    const uint8_t* file_lo = copied->file().base();
    auto copy = copied->CopyToHugePages(false);
    ASSERT_TRUE(copy.ok()) << copy.status().message();
    if (!TransparentHugePagesAvailable()) {
      EXPECT_EQ(copy.value(), 0u);
      GTEST_SKIP() << "transparent huge pages are off on this kernel: nothing is copied";
    }
    EXPECT_GT(copy.value(), 0u);
    EXPECT_EQ(copied->copied_weight_bytes(), copy.value());
    EXPECT_EQ(copied->CopyToHugePages(false).value(), copy.value());  // once only
    const uint8_t* file_hi = file_lo + copied->file().file_size();
    const uint8_t* wq = copied->layer(0).wq.data;
    EXPECT_TRUE(wq < file_lo || wq >= file_hi) << "the matrices point at the copy";
    if (tied) {
      EXPECT_EQ(copied->output().data, copied->tok_embd().data);
    }
    auto want = EngineLogits(*mapped, tokens, 2);
    auto got = EngineLogits(*copied, tokens, 2);
    ASSERT_EQ(got.size(), want.size());
    EXPECT_EQ(0, std::memcmp(got.data(), want.data(), want.size() * sizeof(float)))
        << (tied ? "tied" : "separate head");
  }
  const std::string path = TinyModel("qwen2", DType::Q8_0);
  auto head = Model::Load(path, 0, 1).value();
  auto tail = Model::Load(path, 1, head->config().n_layers).value();
  ASSERT_TRUE(head->CopyToHugePages(false).ok());
  ASSERT_TRUE(tail->CopyToHugePages(false).ok());
  const std::vector<float> logits = TwoStageLogits(*head, *tail, tokens);
  auto want = EngineLogits(*Model::Load(path).value(), tokens, 2);
  ASSERT_EQ(logits.size(), want.size());
  EXPECT_EQ(0, std::memcmp(logits.data(), want.data(), want.size() * sizeof(float)));
}

TEST(Forward, RejectsInvalidBatches) {
  auto m = Model::Load(TinyModel("qwen2", DType::F32)).value();
  auto cache = KvCache::Create(m->config().n_layers, 1, 4, m->config().kv_dim()).value();
  Forward fwd(*m, &cache, nullptr);
  std::vector<float> out;
  Batch b;
  b.Add(5, 1, 0, true);  // must start at position 0
  EXPECT_NE(fwd.Run(b, nullptr, &out).message().find("expected position 0"), std::string::npos);
  b.Clear();
  b.Add(static_cast<int32_t>(m->config().n_vocab), 0, 0, true);
  EXPECT_NE(fwd.Run(b, nullptr, &out).message().find("out of range"), std::string::npos);
  b.Clear();
  b.Add(1, 0, 3, true);
  EXPECT_FALSE(fwd.Run(b, nullptr, &out).ok());
  b.Clear();
  for (int i = 0; i < 5; ++i) b.Add(1, i, 0, i == 4);
  EXPECT_NE(fwd.Run(b, nullptr, &out).message().find("exceeds the context size 4"),
            std::string::npos);
  EXPECT_EQ(cache.length(0), 0);  // nothing was committed
}

TEST(Config, RefusesUnsupportedArchitecture) {
  gguf::Writer w;
  w.SetString("general.architecture", "mamba");
  const std::string path = (std::filesystem::temp_directory_path() / "strata_mamba.gguf").string();
  ASSERT_TRUE(w.Write(path).ok());
  auto m = Model::Load(path);
  ASSERT_FALSE(m.ok());
  EXPECT_NE(m.status().message().find("unsupported architecture 'mamba'"), std::string::npos);
}

}  // namespace
}  // namespace strata
