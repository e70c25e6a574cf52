// strata run: generate from a prompt with a local model.
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>

#include "base/mmap.h"
#include "cli/commands.h"
#include "runtime/engine.h"
#include "runtime/scheduler.h"
#include "tokenizer/chat_template.h"

namespace strata::cli {
namespace {

struct RunArgs {
  std::string model, prompt;
  int max_tokens = 256;
  float temperature = 0.8f;
  int64_t seed = -1;
  int threads = 0;
  int ctx = 4096;
  std::string cache_type_k = "f16", cache_type_v = "f16";
  bool mmap = false;
  int top_k = 40;
  float top_p = 0.95f, min_p = 0.05f;
  float repeat_penalty = 1.0f, presence_penalty = 0.0f, frequency_penalty = 0.0f;
  bool chat = false, json = false;
  std::string chat_template;  // --chat-template: as the node's flag
  // Speculative decoding (docs/speculative.md): as the node's flags.
  std::string model_draft, spec_type = "none";
  int draft_max = 16, draft_min = 0, spec_ngram_size_n = 3, draft_vocab = 0;
  float draft_p_min = 0.75f;
  bool speculative() const { return !model_draft.empty() || spec_type != "none"; }
};

// Generates through a one-slot Scheduler with a drafter: the engine's Generate has no
// speculative decoding. Fills *drafted / *accepted.
Result<GenerateResult> GenerateSpeculative(
    Engine& e, const RunArgs& a, const std::vector<int32_t>& prompt, const GenerateOptions& go,
    const std::function<bool(int32_t, const std::string&)>& on_token, uint64_t* drafted,
    uint64_t* accepted) {
  SchedulerOptions so;
  so.spec.draft_max = a.draft_max;
  so.spec.draft_min = a.draft_min;
  so.spec.p_min = a.draft_p_min;
  so.spec.max_seqs = 1;
  if (!a.model_draft.empty()) {
    STRATA_ASSIGN_OR_RETURN(auto path, ResolveModelArg(a.model_draft));
    STRATA_ASSIGN_OR_RETURN(auto m, Model::Load(path, {.mmap = a.mmap}));
    if (m->config().n_vocab != e.model().config().n_vocab)
      return Errorf("the draft model '%s' does not share the model's vocabulary", path.c_str());
    STRATA_ASSIGN_OR_RETURN(auto d, ModelDrafter::Create(std::move(m), 1, e.n_ctx(), 512,
                                                         a.draft_p_min, &e.pool(), a.draft_vocab));
    so.drafter = std::move(d);
  } else {
    so.drafter = std::make_shared<NgramDrafter>(a.spec_ngram_size_n);
  }
  GenerateResult g;
  g.prompt_tokens = prompt;
  std::mutex mu;
  std::condition_variable cv;
  bool done = false;
  std::string finish, error;
  const auto t0 = std::chrono::steady_clock::now();
  auto t_first = t0;
  Scheduler sched(&e, so);
  SchedRequestParams p;
  p.prompt = prompt;
  p.max_tokens = go.max_tokens;
  p.sampler = go.sampler;
  auto sub = sched.Submit(p, [&](const SchedUpdate& u) {
    if (u.token >= 0) {
      if (g.tokens.empty()) t_first = std::chrono::steady_clock::now();
      g.tokens.push_back(u.token);
    }
    g.text += u.text;
    if (on_token && !u.text.empty()) on_token(u.token, u.text);
    if (!u.done) return;
    std::lock_guard<std::mutex> lock(mu);
    finish = u.finish_reason;
    error = u.error;
    done = true;
    cv.notify_all();
  });
  if (sub.code != SubmitCode::kOk) return Status::Error(sub.message);
  {
    std::unique_lock<std::mutex> lock(mu);
    cv.wait(lock, [&] { return done; });
  }
  const auto t1 = std::chrono::steady_clock::now();
  if (finish == "error") return Status::Error(error);
  g.stop_reason = finish == "stop" ? "eog" : finish;
  g.prompt_ms = std::chrono::duration<double, std::milli>(t_first - t0).count();
  g.gen_ms = std::chrono::duration<double, std::milli>(t1 - t_first).count();
  const SchedulerStats st = sched.stats();
  *drafted = st.spec_drafted;
  *accepted = st.spec_accepted;
  return g;
}

// Renders the prompt as one user turn with the template the node would use for the same
// model and --chat-template (ChooseChatTemplate, ChatPromptTokens): the same tokens.
Result<std::vector<int32_t>> ChatPrompt(const Engine& engine, const RunArgs& a) {
  auto tpl = engine.model().file().GetString("tokenizer.chat_template");
  STRATA_ASSIGN_OR_RETURN(
      ChatTemplateChoice choice,
      ChooseChatTemplate(tpl.ok() ? std::string(tpl.value()) : std::string(), a.chat_template));
  if (choice.fallback) {
    std::fprintf(stderr,
                 "chat template: %s; using the fallback '%s' (choose one with "
                 "--chat-template)\n",
                 choice.note.c_str(), choice.name.c_str());
  }
  ChatRenderOptions opts;
  ChatMessage user;
  user.role = "user";
  user.content = a.prompt;
  return ChatPromptTokens(engine.tokenizer(), choice.info, {user}, opts,
                          /*parse_special_in_content=*/false, nullptr);
}

int Run(const RunArgs& a) {
  auto model = ResolveModelArg(a.model);
  if (!model.ok()) return Fail(model.status().message());
  EngineOptions eo;
  eo.model_path = model.value();
  eo.n_ctx = a.ctx;
  eo.threads = a.threads;
  eo.mmap = a.mmap;
  eo.load_progress = true;
  auto engine = LoadCliEngine(eo, a.cache_type_k, a.cache_type_v);
  if (!engine.ok()) return Fail(engine.status().message());
  Engine& e = *engine.value();
  e.model().PageIn(true);  // progress on a terminal for large files

  std::vector<int32_t> prompt;
  if (a.chat) {
    auto p = ChatPrompt(e, a);
    if (!p.ok()) return Fail(p.status().message());
    prompt = std::move(p).value();
  } else {
    prompt = e.Tokenize(a.prompt);
  }

  GenerateOptions go;
  go.max_tokens = a.max_tokens;
  go.sampler.temperature = a.temperature;
  go.sampler.top_k = a.top_k;
  go.sampler.top_p = a.top_p;
  go.sampler.min_p = a.min_p;
  go.sampler.repeat_penalty = a.repeat_penalty;
  go.sampler.presence_penalty = a.presence_penalty;
  go.sampler.frequency_penalty = a.frequency_penalty;
  go.sampler.seed =
      a.seed >= 0
          ? static_cast<uint64_t>(a.seed)
          : static_cast<uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count());

  std::function<bool(int32_t, const std::string&)> stream;
  if (!a.json) {
    stream = [](int32_t, const std::string& piece) {
      std::fwrite(piece.data(), 1, piece.size(), stdout);
      std::fflush(stdout);
      return true;
    };
  }
  uint64_t drafted = 0, accepted = 0;
  auto r = a.speculative() ? GenerateSpeculative(e, a, prompt, go, stream, &drafted, &accepted)
                           : e.Generate(prompt, go, stream);
  if (!r.ok()) return Fail(r.status().message());
  const GenerateResult& g = r.value();
  const double tps = g.gen_ms > 0 ? 1000.0 * static_cast<double>(g.tokens.size()) / g.gen_ms : 0.0;
  if (a.json) {
    nlohmann::json j;
    j["prompt_tokens"] = g.prompt_tokens;
    j["tokens"] = g.tokens;
    j["text"] = g.text;
    j["stop_reason"] = g.stop_reason;
    j["timings"] = {
        {"prompt_ms", g.prompt_ms},
        {"gen_ms", g.gen_ms},
        {"prompt_tokens_per_s",
         g.prompt_ms > 0 ? 1000.0 * static_cast<double>(g.prompt_tokens.size()) / g.prompt_ms
                         : 0.0},
        {"tokens_per_s", tps}};
    if (a.speculative()) j["speculative"] = {{"drafted", drafted}, {"accepted", accepted}};
    // What the run touched: the range's weights (mapped, not copied), the KV cache positions
    // written, and the process's peak resident set.
    const uint64_t kv_used = static_cast<uint64_t>(g.prompt_tokens.size() + g.tokens.size()) *
                             e.cache().n_layers() *
                             (e.cache().k_row_bytes() + e.cache().v_row_bytes());
    j["memory"] = {{"peak_rss_bytes", PeakRssBytes()},
                   {"weights_bytes", e.model().bound_weight_bytes()},
                   {"kv_cache_reserved_bytes", e.cache().bytes()},
                   {"kv_cache_used_bytes", kv_used}};
    std::printf("%s\n", j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
  } else {
    std::printf("\n");
    std::fprintf(
        stderr, "[%zu prompt tokens in %.1f ms, %zu generated in %.1f ms (%.2f tok/s), stop: %s]\n",
        g.prompt_tokens.size(), g.prompt_ms, g.tokens.size(), g.gen_ms, tps, g.stop_reason.c_str());
    if (a.speculative())
      std::fprintf(stderr, "[speculative: %llu drafted, %llu accepted]\n",
                   static_cast<unsigned long long>(drafted),
                   static_cast<unsigned long long>(accepted));
  }
  return 0;
}

}  // namespace

Runner AddRunCommand(CLI::App* sub) {
  auto a = std::make_shared<RunArgs>();
  AddModelOption(sub, &a->model);
  sub->add_option("--prompt,-p", a->prompt, "Prompt text")->required();
  sub->add_option("--max-tokens,-n", a->max_tokens, "Maximum tokens to generate")
      ->check(CLI::Range(0, 1 << 24));
  sub->add_option("--temperature,--temp", a->temperature, "Sampling temperature (0 = greedy)");
  sub->add_option("--seed,-s", a->seed, "RNG seed (default: random)");
  sub->add_option("--threads,-t", a->threads, "Threads (default: all cores)")
      ->check(CLI::Range(0, 1024));
  sub->add_option("--ctx,-c", a->ctx, "Context size in tokens")->check(CLI::Range(1, 1 << 24));
  AddKvCacheTypeOptions(sub, &a->cache_type_k, &a->cache_type_v);
  AddMmapOption(sub, &a->mmap);
  sub->add_option("--top-k", a->top_k, "Top-k (0 = off)");
  sub->add_option("--top-p", a->top_p, "Top-p (1 = off)");
  sub->add_option("--min-p", a->min_p, "Min-p (0 = off)");
  sub->add_option("--repeat-penalty", a->repeat_penalty, "Repetition penalty (1 = off)");
  sub->add_option("--presence-penalty", a->presence_penalty, "Presence penalty");
  sub->add_option("--frequency-penalty", a->frequency_penalty, "Frequency penalty");
  sub->add_flag("--chat", a->chat,
                "Apply the model's chat template to the prompt as one user turn");
  AddChatTemplateOption(sub, &a->chat_template,
                        "With --chat: template family (deepseek-r1, qwen2.5, llama3.1, chatml); "
                        "default: the model's, else deepseek-r1 (announced)");
  sub->add_flag("--json", a->json, "Print one JSON object with tokens, text and timings");
  sub->add_option("--model-draft", a->model_draft,
                  "Speculative decoding: draft model with the model's tokenizer");
  sub->add_option("--spec-type", a->spec_type, "ngram-simple: speculative n-gram lookup")
      ->check(CLI::IsMember({"none", "ngram-simple"}));
  sub->add_option("--draft-max,--draft,--draft-n", a->draft_max, "Tokens drafted at most per step")
      ->check(CLI::Range(0, 256));
  sub->add_option("--draft-min,--draft-n-min", a->draft_min, "Shorter drafts are not verified")
      ->check(CLI::Range(0, 256));
  sub->add_option("--draft-p-min", a->draft_p_min,
                  "The draft model stops below this top probability")
      ->check(CLI::Range(0.0, 1.0));
  sub->add_option("--draft-vocab", a->draft_vocab,
                  "The draft model proposes only token ids below this (a multiple of 64; 0: all)")
      ->check(CLI::Range(0, 1 << 24));
  sub->add_option("--spec-ngram-size-n", a->spec_ngram_size_n, "Longest n-gram looked up")
      ->check(CLI::Range(1, 64));
  return [a] { return Run(*a); };
}

}  // namespace strata::cli
