// Continuous batching scheduler: outputs equal the single-sequence engine's, concurrency,
// prompt-cache reuse, stop strings, cancellation and admission limits.
#include "runtime/scheduler.h"

#include <gtest/gtest.h>

#include <condition_variable>
#include <filesystem>
#include <functional>
#include <mutex>
#include <set>
#include <thread>

#include "grammar/constraint.h"
#include "model/testing/tiny_model.h"
#include "sampler/testing.h"

namespace strata {
namespace {

const std::string& TinyModel() {
  static const std::string path = [] {
    testdata::TinyModelSpec s;
    s.n_layers = 2;
    s.hidden = 64;
    s.ffn = 96;
    s.seed = 11;
    return testdata::TinyModelPath(s, "strata_scheduler_test_tiny.gguf");
  }();
  return path;
}

std::unique_ptr<Engine> LoadEngine(int n_seq, int n_ctx = 256) {
  EngineOptions eo;
  eo.model_path = TinyModel();
  eo.n_ctx = n_ctx;
  eo.n_seq = n_seq;
  eo.threads = 2;
  auto e = Engine::Load(eo);
  EXPECT_TRUE(e.ok()) << e.status().message();
  return e.ok() ? std::move(e).value() : nullptr;
}

using testdata::GreedySampling;

// A greedy request for `max_tokens` after `prompt`.
SchedRequestParams GreedyRequest(const std::vector<int32_t>& prompt, int max_tokens) {
  SchedRequestParams p;
  p.prompt = prompt;
  p.max_tokens = max_tokens;
  p.sampler = GreedySampling();
  return p;
}

// The single-sequence engine's greedy output: what the scheduler's must equal.
Result<GenerateResult> GreedyGenerate(Engine& e, const std::vector<int32_t>& prompt,
                                      int max_tokens) {
  GenerateOptions go;
  go.max_tokens = max_tokens;
  go.sampler = GreedySampling();
  return e.Generate(prompt, go);
}

// Collects a request's updates and waits for the end.
struct Collector {
  std::mutex mu;
  std::condition_variable cv;
  std::vector<int32_t> tokens;
  std::string text;
  bool done = false;
  SchedUpdate last;
  int n_updates = 0;

  std::function<void(const SchedUpdate&)> Callback() {
    return [this](const SchedUpdate& u) {
      std::lock_guard<std::mutex> lock(mu);
      ++n_updates;
      if (u.token >= 0) tokens.push_back(u.token);
      text += u.text;
      if (u.done) {
        done = true;
        last = u;
      }
      cv.notify_all();
    };
  }
  void Wait() {
    std::unique_lock<std::mutex> lock(mu);
    cv.wait(lock, [this] { return done; });
  }
};

std::vector<std::string> Prompts() {
  return {"Hello there, how are you", "The capital of France is", "1 2 3 4 5 6 7 8 9 10 11 12",
          "Once upon a time in a land far away there lived"};
}

// A single-sequence engine (the reference) and one of kSeqs sequences for the scheduler.
template <int kSeqs>
class SchedulerVsEngineOf : public ::testing::Test {
 protected:
  void SetUp() override {
    ref_ = LoadEngine(1);
    eng_ = LoadEngine(kSeqs);
    ASSERT_TRUE(ref_ && eng_);
  }
  // The reference's greedy outputs for Prompts(), the i-th of max_tokens(i) tokens.
  std::vector<GenerateResult> SoloOutputs(const std::function<int(size_t)>& max_tokens) const {
    const auto prompts = Prompts();
    std::vector<GenerateResult> solo;
    for (size_t i = 0; i < prompts.size(); ++i) {
      auto r = GreedyGenerate(*ref_, ref_->Tokenize(prompts[i]), max_tokens(i));
      EXPECT_TRUE(r.ok()) << r.status().message();
      solo.push_back(r.ok() ? r.value() : GenerateResult{});
    }
    return solo;
  }
  // `prompt` followed by the tokens of `text` (no special tokens).
  std::vector<int32_t> Extended(std::vector<int32_t> prompt, const std::string& text) const {
    for (int32_t t : ref_->Tokenize(text, false, false)) prompt.push_back(t);
    return prompt;
  }
  std::unique_ptr<Engine> ref_, eng_;
};
using SchedulerVsEngine = SchedulerVsEngineOf<2>;
using FourSequencesVsEngine = SchedulerVsEngineOf<4>;

TEST_F(SchedulerVsEngine, OneRequestEqualsEngineGenerate) {
  const auto prompt = ref_->Tokenize("Hello there, how are you");
  auto expect = GreedyGenerate(*ref_, prompt, 24);
  ASSERT_TRUE(expect.ok()) << expect.status().message();

  Scheduler sched(eng_.get(), SchedulerOptions{});
  Collector c;
  SchedRequestParams p = GreedyRequest(prompt, 24);
  auto sub = sched.Submit(p, c.Callback());
  ASSERT_EQ(sub.code, SubmitCode::kOk) << sub.message;
  c.Wait();
  EXPECT_EQ(c.tokens, expect->tokens);
  EXPECT_EQ(c.text, expect->text);
  EXPECT_EQ(c.last.finish_reason, expect->stop_reason == "eog" ? "stop" : "length");
  EXPECT_EQ(c.last.n_prompt, static_cast<int>(prompt.size()));
  EXPECT_EQ(c.last.n_generated, static_cast<int>(expect->tokens.size()));
}

// n_continued: a request whose prompt ends with the first k generated ids of an undisturbed
// run produces exactly the rest of it (ids and text), greedy and seeded with penalties; the
// continued text is reported apart; usage counts new tokens only.
TEST(Scheduler, ContinuationReproducesTheUndisturbedRun) {
  auto eng = LoadEngine(2);
  ASSERT_TRUE(eng);
  Scheduler sched(eng.get(), SchedulerOptions{});
  const auto prompt = eng->Tokenize("Once upon a time in a land far away");
  const SamplerParams seeded{.temperature = 0.9f,
                             .top_k = 0,
                             .repeat_penalty = 1.1f,
                             .presence_penalty = 0.5f,
                             .frequency_penalty = 0.3f,
                             .seed = 77};
  constexpr int kN = 20;
  for (const SamplerParams& sp : {GreedySampling(), seeded}) {
    Collector full;
    SchedRequestParams p;
    p.prompt = prompt;
    p.max_tokens = kN;
    p.sampler = sp;
    ASSERT_EQ(sched.Submit(p, full.Callback()).code, SubmitCode::kOk);
    full.Wait();
    ASSERT_EQ(full.tokens.size(), static_cast<size_t>(kN));
    for (int k : {1, 2, 7, 13, kN - 1}) {
      Collector c;
      std::string continued;
      SchedRequestParams q = p;
      q.prompt.insert(q.prompt.end(), full.tokens.begin(), full.tokens.begin() + k);
      q.n_continued = k;
      q.max_tokens = kN - k;
      auto cb = c.Callback();
      ASSERT_EQ(sched
                    .Submit(q,
                            [&, cb](const SchedUpdate& u) {
                              continued += u.continued_text;
                              cb(u);
                            })
                    .code,
                SubmitCode::kOk);
      c.Wait();
      EXPECT_EQ(c.tokens, std::vector<int32_t>(full.tokens.begin() + k, full.tokens.end()))
          << "temperature " << sp.temperature << " cut " << k;
      EXPECT_EQ(continued + c.text, full.text) << "cut " << k;
      EXPECT_EQ(c.last.n_prompt, static_cast<int>(prompt.size()));
      EXPECT_EQ(c.last.n_generated, kN - k);
    }
  }
  // n_continued must leave a prompt before it.
  SchedRequestParams bad;
  bad.prompt = prompt;
  bad.n_continued = static_cast<int>(prompt.size());
  Collector c;
  EXPECT_EQ(sched.Submit(bad, c.Callback()).code, SubmitCode::kInvalid);
}

TEST_F(FourSequencesVsEngine, ConcurrentRequestsEqualSoloOutputs) {
  const auto prompts = Prompts();
  // Different lengths: sequences end apart.
  const auto solo = SoloOutputs([](size_t i) { return 12 + 4 * static_cast<int>(i); });
  ASSERT_FALSE(HasFailure());
  SchedulerOptions so;
  so.n_batch = 7;  // prompts are split into chunks mixed with other sequences' decode tokens
  Scheduler sched(eng_.get(), so);
  std::vector<std::unique_ptr<Collector>> cs;
  for (size_t i = 0; i < prompts.size(); ++i) {
    cs.push_back(std::make_unique<Collector>());
    SchedRequestParams p = GreedyRequest(solo[i].prompt_tokens, 12 + 4 * static_cast<int>(i));
    auto sub = sched.Submit(p, cs.back()->Callback());
    ASSERT_EQ(sub.code, SubmitCode::kOk) << sub.message;
  }
  for (size_t i = 0; i < prompts.size(); ++i) {
    cs[i]->Wait();
    EXPECT_EQ(cs[i]->tokens, solo[i].tokens) << "request " << i;
    EXPECT_EQ(cs[i]->text, solo[i].text) << "request " << i;
  }
  const SchedulerStats st = sched.stats();
  // Batching: fewer model steps than the tokens evaluated one sequence at a time.
  EXPECT_LT(st.steps, st.evaluated_tokens);
  EXPECT_EQ(st.requests_done, prompts.size());
}

TEST_F(SchedulerVsEngine, MoreRequestsThanSlotsWaitAndAllFinish) {
  const auto prompts = Prompts();
  Scheduler sched(eng_.get(), SchedulerOptions{});
  std::vector<std::unique_ptr<Collector>> cs;
  for (const auto& text : prompts) {
    cs.push_back(std::make_unique<Collector>());
    SchedRequestParams p = GreedyRequest(ref_->Tokenize(text), 8);
    ASSERT_EQ(sched.Submit(p, cs.back()->Callback()).code, SubmitCode::kOk);
  }
  for (size_t i = 0; i < prompts.size(); ++i) {
    cs[i]->Wait();
    auto r = GreedyGenerate(*ref_, ref_->Tokenize(prompts[i]), 8);
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(cs[i]->tokens, r->tokens) << "request " << i;
  }
}

TEST_F(SchedulerVsEngine, PromptCacheReusesKvAndKeepsOutput) {
  const auto first = ref_->Tokenize("The quick brown fox jumps over the lazy dog and then");
  const auto second = Extended(first, " it runs home");

  Scheduler sched(eng_.get(), SchedulerOptions{});
  auto run = [&](const std::vector<int32_t>& prompt) {
    Collector c;
    SchedRequestParams p = GreedyRequest(prompt, 10);
    EXPECT_EQ(sched.Submit(p, c.Callback()).code, SubmitCode::kOk);
    c.Wait();
    return std::make_pair(c.tokens, c.last);
  };
  auto [t1, u1] = run(first);
  EXPECT_EQ(u1.n_cached, 0);
  const uint64_t eval_before = sched.stats().evaluated_tokens;
  auto [t2, u2] = run(second);
  const uint64_t evaluated = sched.stats().evaluated_tokens - eval_before;
  EXPECT_EQ(u2.n_cached, static_cast<int>(first.size()));
  // Only the new prompt tokens plus the decode steps ran through the model.
  EXPECT_EQ(evaluated, second.size() - first.size() + t2.size() - 1);

  auto r = GreedyGenerate(*ref_, second, 10);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(t2, r->tokens);

  // The identical prompt again: everything but the last prompt token is reused.
  auto [t3, u3] = run(second);
  EXPECT_EQ(u3.n_cached, static_cast<int>(second.size()) - 1);
  EXPECT_EQ(t3, r->tokens);
}

TEST_F(SchedulerVsEngine, PromptCacheCopiesFromARunningSequence) {
  const auto shared = ref_->Tokenize("You are a helpful assistant. Answer briefly. Question:");
  const auto second = Extended(shared, " why is the sky blue");

  Scheduler sched(eng_.get(), SchedulerOptions{});
  Collector a, b;
  std::atomic<bool> started{false};
  SchedRequestParams pa = GreedyRequest(shared, 200);
  auto cb = a.Callback();
  auto ha = sched.Submit(pa, [&](const SchedUpdate& u) {
    cb(u);
    started = true;
  });
  ASSERT_EQ(ha.code, SubmitCode::kOk);
  while (!started) std::this_thread::yield();  // A holds its prompt's KV now
  SchedRequestParams pb = GreedyRequest(second, 10);
  ASSERT_EQ(sched.Submit(pb, b.Callback()).code, SubmitCode::kOk);
  b.Wait();
  ha.request->Cancel();
  a.Wait();
  EXPECT_EQ(b.last.n_cached, static_cast<int>(shared.size()));
  auto r = GreedyGenerate(*ref_, second, 10);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(b.tokens, r->tokens);
}

TEST(Scheduler, StopStringsNeverLeak) {
  auto ref = LoadEngine(1);
  auto eng = LoadEngine(1);
  ASSERT_TRUE(ref && eng);
  const auto prompt = ref->Tokenize("Once upon a time");
  auto full = GreedyGenerate(*ref, prompt, 20);
  ASSERT_TRUE(full.ok());
  ASSERT_GE(full->text.size(), 6u);
  // A stop string taken from the middle of the expected text.
  const size_t at = full->text.size() / 2;
  const std::string stop = full->text.substr(at, 3);
  const size_t first = full->text.find(stop);

  Scheduler sched(eng.get(), SchedulerOptions{});
  Collector c;
  SchedRequestParams p = GreedyRequest(prompt, 20);
  p.stop = {"never-appears-xyz", stop};
  ASSERT_EQ(sched.Submit(p, c.Callback()).code, SubmitCode::kOk);
  c.Wait();
  EXPECT_EQ(c.text, full->text.substr(0, first));
  EXPECT_EQ(c.last.finish_reason, "stop");
}

TEST(Scheduler, CancelStopsWithinAStep) {
  auto eng = LoadEngine(2, 512);
  ASSERT_TRUE(eng);
  Scheduler sched(eng.get(), SchedulerOptions{});
  Collector c;
  std::shared_ptr<SchedRequest> handle;
  std::mutex hmu;
  SchedRequestParams p = GreedyRequest(eng->Tokenize("Tell me a long story"), 400);
  // Cancel from the callback after the 5th token: no further token may be sampled.
  std::atomic<int> seen{0};
  auto cb = c.Callback();
  auto sub = sched.Submit(p, [&](const SchedUpdate& u) {
    cb(u);
    if (u.token >= 0 && ++seen == 5) {
      std::lock_guard<std::mutex> lock(hmu);
      if (handle) handle->Cancel();
    }
  });
  ASSERT_EQ(sub.code, SubmitCode::kOk);
  {
    std::lock_guard<std::mutex> lock(hmu);
    handle = sub.request;
    if (seen >= 5) handle->Cancel();
  }
  c.Wait();
  EXPECT_EQ(c.last.finish_reason, "cancelled");
  EXPECT_LE(c.tokens.size(), 6u);  // at most one step after the cancel is seen
  EXPECT_EQ(sched.stats().running, 0);

  // A queued request cancelled before it starts is finished without running.
  Collector c2;
  auto s2 = sched.Submit(p, c2.Callback());
  ASSERT_EQ(s2.code, SubmitCode::kOk);
  s2.request->Cancel();
  c2.Wait();
  EXPECT_EQ(c2.last.finish_reason, "cancelled");
  EXPECT_LE(c2.tokens.size(), 1u);
}

TEST(Scheduler, RejectsInvalidAndFullQueue) {
  auto eng = LoadEngine(1, 64);
  ASSERT_TRUE(eng);
  SchedulerOptions so;
  so.max_queue = 1;
  Scheduler sched(eng.get(), so);
  SchedRequestParams p;
  EXPECT_EQ(sched.Submit(p, nullptr).code, SubmitCode::kInvalid);  // empty prompt
  p.prompt.assign(64, 100);
  auto too_long = sched.Submit(p, nullptr);
  EXPECT_EQ(too_long.code, SubmitCode::kInvalid);
  EXPECT_NE(too_long.message.find("64"), std::string::npos) << too_long.message;
  p.prompt = {1, 2, -5};
  EXPECT_EQ(sched.Submit(p, nullptr).code, SubmitCode::kInvalid);

  // One slot + one waiting place: a third concurrent request is refused.
  p.prompt = eng->Tokenize("Hello");
  p.max_tokens = 50;
  p.sampler = GreedySampling();
  std::vector<std::unique_ptr<Collector>> cs;
  std::vector<std::shared_ptr<SchedRequest>> handles;
  int refused = 0;
  for (int i = 0; i < 4; ++i) {
    cs.push_back(std::make_unique<Collector>());
    auto r = sched.Submit(p, cs.back()->Callback());
    if (r.code == SubmitCode::kQueueFull) {
      ++refused;
      cs.pop_back();
    } else {
      ASSERT_EQ(r.code, SubmitCode::kOk);
      handles.push_back(r.request);
    }
  }
  EXPECT_GE(refused, 1);
  for (auto& h : handles) h->Cancel();
  for (auto& c : cs) c->Wait();
}

TEST(Scheduler, ZeroMaxTokensAndDeadline) {
  auto eng = LoadEngine(1, 512);
  ASSERT_TRUE(eng);
  Scheduler sched(eng.get(), SchedulerOptions{});
  Collector c;
  SchedRequestParams p;
  p.prompt = eng->Tokenize("Hello");
  p.max_tokens = 0;
  ASSERT_EQ(sched.Submit(p, c.Callback()).code, SubmitCode::kOk);
  c.Wait();
  EXPECT_EQ(c.last.finish_reason, "length");
  EXPECT_TRUE(c.tokens.empty());

  Collector c2;
  p.max_tokens = 400;
  p.deadline = std::chrono::steady_clock::now() - std::chrono::seconds(1);
  ASSERT_EQ(sched.Submit(p, c2.Callback()).code, SubmitCode::kOk);
  c2.Wait();
  EXPECT_EQ(c2.last.finish_reason, "timeout");
}

// A receiver that owns the request handle while the request's callback owns the receiver
// (what the node's connection does) must be freed once the request is done: the scheduler
// drops the callback after the final update, breaking the cycle.
TEST(Scheduler, FinishedRequestReleasesItsCallback) {
  auto eng = LoadEngine(1, 256);
  ASSERT_TRUE(eng);
  Scheduler sched(eng.get(), SchedulerOptions{});
  struct Receiver {
    Collector c;
    std::shared_ptr<SchedRequest> request;
  };
  std::weak_ptr<Receiver> weak_rx;
  std::weak_ptr<SchedRequest> weak_req;
  for (int max_tokens : {0, 3}) {  // finished before and after generating
    auto rx = std::make_shared<Receiver>();
    SchedRequestParams p = GreedyRequest(eng->Tokenize("Hello there"), max_tokens);
    auto sub = sched.Submit(p, [rx](const SchedUpdate& u) { rx->c.Callback()(u); });
    ASSERT_EQ(sub.code, SubmitCode::kOk);
    rx->request = sub.request;
    weak_rx = rx;
    weak_req = sub.request;
    sub.request.reset();
    rx->c.Wait();
    rx.reset();
    // The callback is released on the loop thread just after the final update, and the
    // scheduler's own handle of the request a moment later (both on the loop thread).
    for (int i = 0; i < 200 && (!weak_rx.expired() || !weak_req.expired()); ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    EXPECT_TRUE(weak_rx.expired()) << "max_tokens " << max_tokens;
    EXPECT_TRUE(weak_req.expired()) << "max_tokens " << max_tokens;
  }
}

// A grammar constraint holds whatever the weights (random here), ends the generation when the
// grammar is complete, and a thinking budget forces the closing tokens in place of samples.
TEST(Scheduler, ConstraintAndThinkingBudget) {
  auto eng = LoadEngine(2);
  ASSERT_TRUE(eng);
  const Tokenizer& tok = eng->tokenizer();
  grammar::GrammarCache cache(grammar::TokenVocab::FromTokenizer(tok));
  grammar::ConstraintSpec spec;
  spec.kind = grammar::ConstraintSpec::kGbnf;
  spec.gbnf = "root ::= \"ok \" [a-c]{2,4} \"!\"";
  auto a = cache.Get(spec);
  ASSERT_TRUE(a.ok()) << a.status().message();
  Scheduler sched(eng.get(), SchedulerOptions{});
  for (uint64_t seed : {1u, 2u, 3u}) {
    SchedRequestParams p;
    p.prompt = eng->Tokenize("Hello there, how are you");
    p.max_tokens = 40;
    p.sampler.seed = seed;
    p.sampler.temperature = 1.5f;
    p.constraint = std::make_shared<grammar::Matcher>(a.value());
    Collector c;
    ASSERT_EQ(sched.Submit(std::move(p), c.Callback()).code, SubmitCode::kOk);
    c.Wait();
    EXPECT_EQ(c.last.finish_reason, "stop");
    const std::string& t = c.text;
    ASSERT_GE(t.size(), 6u) << t;
    EXPECT_EQ(t.substr(0, 3), "ok ") << t;
    EXPECT_EQ(t.back(), '!') << t;
    EXPECT_TRUE(t.size() >= 6 && t.size() <= 8) << t;
    for (size_t i = 3; i + 1 < t.size(); ++i) EXPECT_TRUE(t[i] >= 'a' && t[i] <= 'c') << t;
  }
  // Thinking: 5 free tokens, then the closing tokens, then the constraint.
  const std::vector<int32_t> close = tok.Encode("</think>", false, true);
  SchedRequestParams p;
  p.prompt = eng->Tokenize("Think first");
  p.max_tokens = 60;
  p.in_reasoning = true;
  p.thinking_budget = 5;
  p.think_close = close;
  p.constraint = std::make_shared<grammar::Matcher>(a.value());
  Collector c;
  ASSERT_EQ(sched.Submit(std::move(p), c.Callback()).code, SubmitCode::kOk);
  c.Wait();
  ASSERT_GE(c.tokens.size(), 5 + close.size());
  EXPECT_EQ(std::vector<int32_t>(c.tokens.begin() + 5,
                                 c.tokens.begin() + 5 + static_cast<long>(close.size())),
            close);
  EXPECT_EQ(c.last.n_thinking, 5);
  const size_t end = c.text.find("</think>");
  ASSERT_NE(end, std::string::npos) << c.text;
  EXPECT_EQ(c.text.substr(end + 8, 3), "ok ") << c.text;
  EXPECT_EQ(c.last.finish_reason, "stop");
}

// The whole model in-process, presented as a pipeline of `stages` stages with depth 4: records
// how many steps are in flight and how many sequences each decode-only step holds.
class StagedBackend : public StepBackend {
 public:
  StagedBackend(Engine* e, int stages)
      : inner_(e->model(), &e->cache(), &e->pool()), stages_(stages) {}
  int n_seq() const override { return inner_.n_seq(); }
  int n_ctx() const override { return inner_.n_ctx(); }
  int depth() const override { return 4; }
  int stages() const override { return stages_; }
  void Submit(Step step) override {
    const std::set<int32_t> seqs(step.batch.seq.begin(), step.batch.seq.end());
    max_in_flight = std::max(max_in_flight, ++in_flight_);
    if (static_cast<size_t>(step.batch.size()) == seqs.size())
      decode_sizes.push_back(static_cast<int>(seqs.size()));
    inner_.Submit(std::move(step));
  }
  StepResult Next() override {
    --in_flight_;
    return inner_.Next();
  }
  // Read after the scheduler stopped (the loop thread is the only caller before).
  int max_in_flight = 0;
  std::vector<int> decode_sizes;

 private:
  LocalBackend inner_;
  int stages_;
  int in_flight_ = 0;
};

TEST_F(FourSequencesVsEngine, MicroBatchesAreOnePerStageAndMergeAfterStaggeredArrivals) {
  const auto prompts = Prompts();
  const auto solo = SoloOutputs([](size_t) { return 24; });
  ASSERT_FALSE(HasFailure());
  auto backend = std::make_unique<StagedBackend>(eng_.get(), 2);
  StagedBackend* staged = backend.get();
  Scheduler sched(eng_->tokenizer(), std::move(backend), SchedulerOptions{});
  std::vector<std::unique_ptr<Collector>> cs;
  for (size_t i = 0; i < prompts.size(); ++i) {
    cs.push_back(std::make_unique<Collector>());
    SchedRequestParams p = GreedyRequest(solo[i].prompt_tokens, 24);
    ASSERT_EQ(sched.Submit(p, cs.back()->Callback()).code, SubmitCode::kOk);
    // One by one: each arrives while the earlier ones decode in their own micro-batches.
    std::unique_lock<std::mutex> lock(cs.back()->mu);
    cs.back()->cv.wait(lock, [&] { return cs.back()->n_updates > 0; });
  }
  for (size_t i = 0; i < prompts.size(); ++i) {
    cs[i]->Wait();
    EXPECT_EQ(cs[i]->tokens, solo[i].tokens) << "request " << i;
  }
  sched.Stop();
  // Two stages: two micro-batches in flight at most, of ceil(running / 2) sequences, and the
  // single-sequence groups of the staggered start merge into pairs.
  EXPECT_LE(staged->max_in_flight, 2);
  int pairs = 0;
  for (int n : staged->decode_sizes) {
    EXPECT_LE(n, 2);
    pairs += n == 2 ? 1 : 0;
  }
  EXPECT_GE(pairs, 20) << "decode steps: " << staged->decode_sizes.size();
}

}  // namespace
}  // namespace strata
