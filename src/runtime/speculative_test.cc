// Speculative decoding: the acceptance/rejection math keeps the target distribution (many
// fixed-seed samples), greedy verification, the n-gram lookup, and the scheduler with a
// drafter produces the plain scheduler's greedy output.
#include "runtime/speculative.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <condition_variable>
#include <mutex>
#include <random>

#include "model/testing/tiny_model.h"
#include "runtime/scheduler.h"
#include "sampler/testing.h"

namespace strata {
namespace {

SparseDist Normalize(const std::vector<double>& w) {
  double sum = 0;
  for (double x : w) sum += x;
  SparseDist d;
  for (size_t i = 0; i < w.size(); ++i)
    if (w[i] > 0) d.emplace_back(static_cast<int32_t>(i), w[i] / sum);
  return d;
}

int32_t Draw(const SparseDist& d, double u) {
  double cum = 0;
  for (const auto& [t, p] : d) {
    cum += p;
    if (u < cum) return t;
  }
  return d.back().first;
}

// x ~ q, accept with min(1, p/q), else resample from norm(max(0, p - q)): the result ~ p.
TEST(SpeculativeMath, KeepsTheTargetDistribution) {
  const std::vector<std::vector<double>> ps = {
      {0.5, 0.2, 0.1, 0.1, 0.1, 0}, {0.05, 0.05, 0.3, 0.3, 0.2, 0.1}, {1, 0, 0, 0, 0, 0}};
  const std::vector<std::vector<double>> qs = {
      {0.1, 0.1, 0.5, 0.1, 0.1, 0.1}, {0.3, 0.3, 0.1, 0.1, 0.1, 0.1}, {0.2, 0.2, 0, 0, 0.6, 0}};
  std::mt19937_64 rng(42);
  std::uniform_real_distribution<double> u01(0.0, 1.0);
  for (const auto& pw : ps) {
    for (const auto& qw : qs) {
      const SparseDist p = Normalize(pw), q = Normalize(qw);
      const int n = 200000;
      std::vector<int> hist(6, 0);
      int accepted = 0;
      for (int i = 0; i < n; ++i) {
        const int32_t x = Draw(q, u01(rng));
        int32_t out = x;
        if (AcceptDraft(ProbOf(p, x), ProbOf(q, x), u01(rng))) {
          ++accepted;
        } else {
          out = ResampleResidual(p, q, u01(rng));
        }
        hist[static_cast<size_t>(out)]++;
      }
      double overlap = 0;  // the expected acceptance rate: sum min(p, q)
      for (size_t t = 0; t < 6; ++t) {
        const double want = ProbOf(p, static_cast<int32_t>(t));
        overlap += std::min(want, ProbOf(q, static_cast<int32_t>(t)));
        EXPECT_NEAR(static_cast<double>(hist[t]) / n, want, 0.006) << "token " << t;
      }
      EXPECT_NEAR(static_cast<double>(accepted) / n, overlap, 0.006);
    }
  }
}

// Through the sampler (temperature 1, no filters) with a deterministic draft: the first
// emitted token follows softmax(logits) whatever was drafted.
TEST(SpeculativeMath, VerifyDraftSamplesTheTarget) {
  const std::vector<float> row = {1.0f, 0.5f, 2.0f, -1.0f, 0.0f, 1.5f};
  std::vector<float> logits = row;
  logits.insert(logits.end(), row.begin(), row.end());
  double z = 0;
  for (float l : row) z += std::exp(static_cast<double>(l));
  SamplerParams sp = testdata::PlainSampling();
  sp.seed = 7;
  Sampler s(sp);
  for (int32_t drafted : {2, 3}) {
    const int n = 100000;
    std::vector<int> hist(6, 0);
    int two = 0;
    for (int i = 0; i < n; ++i) {
      std::vector<int32_t> out;
      VerifyDraft(s, logits.data(), 6, {drafted}, &out);
      ASSERT_GE(out.size(), 1u);
      ASSERT_LE(out.size(), 2u);
      if (out.size() == 2) {
        ++two;
        EXPECT_EQ(out[0], drafted);
      }
      hist[static_cast<size_t>(out[0])]++;
    }
    for (size_t t = 0; t < 6; ++t)
      EXPECT_NEAR(static_cast<double>(hist[t]) / n, std::exp(row[t]) / z, 0.006) << t;
    EXPECT_NEAR(static_cast<double>(two) / n, std::exp(row[static_cast<size_t>(drafted)]) / z,
                0.006);
  }
}

TEST(SpeculativeMath, GreedyKeepsTheArgmaxPrefix) {
  // Rows: argmax 4, 1, 3.
  const std::vector<float> logits = {0, 0, 0, 0, 5, 0,  //
                                     0, 5, 0, 0, 0, 0,  //
                                     0, 0, 0, 5, 0, 0};
  Sampler s(testdata::GreedySampling());
  std::vector<int32_t> out;
  VerifyDraft(s, logits.data(), 6, {4, 1}, &out);
  EXPECT_EQ(out, (std::vector<int32_t>{4, 1, 3}));
  out.clear();
  VerifyDraft(s, logits.data(), 6, {4, 2}, &out);
  EXPECT_EQ(out, (std::vector<int32_t>{4, 1}));
  out.clear();
  VerifyDraft(s, logits.data(), 6, {0, 1}, &out);
  EXPECT_EQ(out, (std::vector<int32_t>{4}));
}

TEST(NgramLookup, FindsTheLatestLongestMatch) {
  // Suffix "7 8" occurred at 1 and 5: the latest (5) is followed by 9 1.
  EXPECT_EQ(NgramLookup({6, 7, 8, 2, 3, 7, 8, 9, 1, 7, 8}, 3, 4),
            (std::vector<int32_t>{9, 1, 7, 8}));
  EXPECT_EQ(NgramLookup({6, 7, 8, 2, 3, 7, 8, 9, 1, 7, 8}, 3, 1), (std::vector<int32_t>{9}));
  // The 3-gram "1 2 3" beats the later 1-gram "3".
  EXPECT_EQ(NgramLookup({1, 2, 3, 4, 5, 3, 6, 1, 2, 3}, 3, 2), (std::vector<int32_t>{4, 5}));
  EXPECT_TRUE(NgramLookup({1, 2, 3, 4}, 3, 4).empty());
  EXPECT_TRUE(NgramLookup({5}, 3, 4).empty());
  EXPECT_TRUE(NgramLookup({5, 5}, 3, 0).empty());
  EXPECT_EQ(NgramLookup({5, 5}, 3, 4), (std::vector<int32_t>{5}));
}

// ---- Through the scheduler ----

std::string Tiny(DType type, const char* name) {
  testdata::TinyModelSpec s;
  s.n_layers = 2;
  s.hidden = 64;
  s.ffn = 96;
  s.seed = 11;
  s.type = type;
  return testdata::TinyModelPath(s, name);
}

struct Done {
  std::mutex mu;
  std::condition_variable cv;
  std::vector<int32_t> tokens;
  bool done = false;
};

std::vector<int32_t> Generate(Scheduler& sched, const std::vector<int32_t>& prompt, int n) {
  Done d;
  SchedRequestParams p;
  p.prompt = prompt;
  p.max_tokens = n;
  p.sampler = testdata::GreedySampling();
  auto r = sched.Submit(p, [&d](const SchedUpdate& u) {
    std::lock_guard<std::mutex> lock(d.mu);
    if (u.token >= 0) d.tokens.push_back(u.token);
    if (u.done) d.done = true;
    d.cv.notify_all();
  });
  EXPECT_EQ(r.code, SubmitCode::kOk) << r.message;
  std::unique_lock<std::mutex> lock(d.mu);
  d.cv.wait(lock, [&d] { return d.done; });
  return d.tokens;
}

std::unique_ptr<Engine> Load(const std::string& path) {
  EngineOptions eo;
  eo.model_path = path;
  eo.n_ctx = 256;
  eo.n_seq = 2;
  eo.threads = 2;
  auto e = Engine::Load(eo);
  EXPECT_TRUE(e.ok()) << e.status().message();
  return e.ok() ? std::move(e).value() : nullptr;
}

// Drafts from the known greedy outputs with every third token wrong: exercises accepted
// prefixes, rejections at every position, and full acceptance.
class ScriptedDrafter : public Drafter {
 public:
  explicit ScriptedDrafter(std::vector<std::vector<int32_t>> seqs) : seqs_(std::move(seqs)) {}
  Status Draft(std::vector<DraftJob>* jobs) override {
    for (DraftJob& j : *jobs) {
      std::vector<int32_t> ctx = *j.context;
      ctx.push_back(j.last);
      j.out.clear();
      for (const auto& s : seqs_) {
        if (ctx.size() > s.size() || !std::equal(ctx.begin(), ctx.end(), s.begin())) continue;
        for (size_t i = ctx.size(); i < s.size() && static_cast<int>(j.out.size()) < j.max; ++i)
          j.out.push_back(++calls_ % 3 == 0 ? (s[i] + 1) % 1000 : s[i]);
      }
    }
    return Status::Ok();
  }
  const char* name() const override { return "scripted"; }

 private:
  std::vector<std::vector<int32_t>> seqs_;
  int calls_ = 0;
};

TEST(SpeculativeScheduler, GreedyOutputEqualsPlainDecoding) {
  const std::string target = Tiny(DType::Q8_0, "strata_spec_test_q8.gguf");
  const std::string draft = Tiny(DType::Q4_0, "strata_spec_test_q4.gguf");
  auto engine = Load(target);
  ASSERT_TRUE(engine);
  const std::vector<std::vector<int32_t>> prompts = {
      engine->Tokenize("The capital of France is"),
      engine->Tokenize("1 2 3 4 1 2 3 4 1 2 3 4 1 2 3 4"),
      engine->Tokenize("Hello there, how are you")};
  std::vector<std::vector<int32_t>> plain;
  {
    Scheduler sched(engine.get(), SchedulerOptions{});
    for (const auto& p : prompts) plain.push_back(Generate(sched, p, 40));
  }
  std::vector<std::vector<int32_t>> full;
  for (size_t i = 0; i < prompts.size(); ++i) {
    full.push_back(prompts[i]);
    full.back().insert(full.back().end(), plain[i].begin(), plain[i].end());
  }
  for (int mode = 0; mode < 4; ++mode) {
    SchedulerOptions so;
    so.spec.draft_max = 5;
    so.spec.p_min = 0.0f;
    so.spec.max_seqs = 2;
    if (mode == 0) {
      so.drafter = std::make_shared<ScriptedDrafter>(full);
    } else if (mode == 2) {
      so.drafter = std::make_shared<NgramDrafter>(3);  // random weights: rarely a match
    } else {  // a draft model; mode 3 with a smaller head (--draft-vocab)
      auto m = Model::Load(draft);
      ASSERT_TRUE(m.ok()) << m.status().message();
      // Mode 3's head: the ids up to the largest the target generates, on the 64-row step.
      int32_t top = 0;
      for (const auto& p : plain) top = std::max(top, *std::max_element(p.begin(), p.end()));
      const int64_t vocab = mode == 3 ? (top + 64) / 64 * 64 : 0;
      ASSERT_LT(vocab, engine->model().config().n_vocab);
      auto d = ModelDrafter::Create(std::move(m).value(), 2, 256, 64, 0.0f, &engine->pool(), vocab);
      ASSERT_TRUE(d.ok()) << d.status().message();
      so.drafter = std::move(d).value();
    }
    Scheduler sched(engine.get(), so);
    for (size_t i = 0; i < prompts.size(); ++i)
      EXPECT_EQ(Generate(sched, prompts[i], 40), plain[i]) << "mode " << mode << " prompt " << i;
    const SchedulerStats st = sched.stats();
    EXPECT_LE(st.spec_accepted, st.spec_drafted);
    if (mode != 2) {
      EXPECT_GT(st.spec_verified, 0u) << mode;
      EXPECT_GT(st.spec_accepted, mode == 0 ? st.spec_drafted / 8 : 0) << mode;
      EXPECT_LT(st.spec_accepted, st.spec_drafted) << mode;  // not always
    }
  }
}

// --draft-vocab: only ids below it are drafted; a size off the 64-row step or over the
// vocabulary is refused.
TEST(ModelDrafter, DraftVocabBoundsTheDraftedIds) {
  const std::string path = Tiny(DType::Q4_0, "strata_spec_test_q4.gguf");
  ThreadPool pool(2);
  for (int64_t bad : {int64_t{-64}, int64_t{100}, int64_t{1} << 30}) {
    auto d = ModelDrafter::Create(Model::Load(path).value(), 1, 64, 64, 0.0f, &pool, bad);
    EXPECT_FALSE(d.ok()) << bad;
  }
  auto d = ModelDrafter::Create(Model::Load(path).value(), 1, 64, 64, 0.0f, &pool, 64);
  ASSERT_TRUE(d.ok()) << d.status().message();
  const std::vector<int32_t> context = {1, 500, 700, 900};
  std::vector<DraftJob> jobs(1);
  jobs[0].context = &context;
  jobs[0].last = 800;
  jobs[0].max = 12;
  ASSERT_TRUE(d.value()->Draft(&jobs).ok());
  EXPECT_EQ(jobs[0].out.size(), 12u);  // p_min 0: always drafts
  for (int32_t id : jobs[0].out) EXPECT_LT(id, 64);
  // --draft-p-min: a random model's best token is far from certain, so drafting stops at once.
  auto sure = ModelDrafter::Create(Model::Load(path).value(), 1, 64, 64, 0.99f, &pool, 64);
  ASSERT_TRUE(sure.ok()) << sure.status().message();
  ASSERT_TRUE(sure.value()->Draft(&jobs).ok());
  EXPECT_TRUE(jobs[0].out.empty()) << jobs[0].out.size();
}

}  // namespace
}  // namespace strata
