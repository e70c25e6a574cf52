// strata run: generate from a prompt with a local model.
#include <chrono>
#include <cstdio>
#include <memory>
#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "base/mmap.h"
#include "runtime/engine.h"
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
  int top_k = 40;
  float top_p = 0.95f, min_p = 0.05f;
  float repeat_penalty = 1.0f, presence_penalty = 0.0f, frequency_penalty = 0.0f;
  bool chat = false, json = false;
};

// Renders the prompt as one user turn with the model's chat template.
Result<std::vector<int32_t>> ChatPrompt(const Engine& engine, const std::string& prompt) {
  auto tpl = engine.model().file().GetString("tokenizer.chat_template");
  if (!tpl.ok()) return Status::Error("--chat: the model has no tokenizer.chat_template");
  STRATA_ASSIGN_OR_RETURN(ChatTemplateInfo info, AnalyzeChatTemplate(std::string(tpl.value())));
  const Tokenizer& tok = engine.tokenizer();
  const std::string bos = tok.bos() >= 0 ? tok.Text(tok.bos()) : std::string();
  STRATA_ASSIGN_OR_RETURN(std::string text,
                          RenderChat(info, {{"user", prompt}}, true, bos));
  // The templates write BOS themselves: add it only when the rendered text lacks it.
  const bool has_bos = !bos.empty() && text.rfind(bos, 0) == 0;
  return engine.Tokenize(text, !has_bos, true);
}

int Run(const RunArgs& a) {
  auto model = ResolveModelArg(a.model);
  if (!model.ok()) return Fail(model.status().message());
  EngineOptions eo;
  eo.model_path = model.value();
  eo.n_ctx = a.ctx;
  eo.threads = a.threads;
  auto engine = Engine::Load(eo);
  if (!engine.ok()) return Fail(engine.status().message());
  Engine& e = *engine.value();
  e.model().PageIn(true);  // progress on a terminal for large files

  std::vector<int32_t> prompt;
  if (a.chat) {
    auto p = ChatPrompt(e, a.prompt);
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
  go.sampler.seed = a.seed >= 0 ? static_cast<uint64_t>(a.seed)
                                : static_cast<uint64_t>(
                                      std::chrono::steady_clock::now().time_since_epoch().count());

  std::function<bool(int32_t, const std::string&)> stream;
  if (!a.json) {
    stream = [](int32_t, const std::string& piece) {
      std::fwrite(piece.data(), 1, piece.size(), stdout);
      std::fflush(stdout);
      return true;
    };
  }
  auto r = e.Generate(prompt, go, stream);
  if (!r.ok()) return Fail(r.status().message());
  const GenerateResult& g = r.value();
  const double tps = g.gen_ms > 0 ? 1000.0 * static_cast<double>(g.tokens.size()) / g.gen_ms : 0.0;
  if (a.json) {
    nlohmann::json j;
    j["prompt_tokens"] = g.prompt_tokens;
    j["tokens"] = g.tokens;
    j["text"] = g.text;
    j["stop_reason"] = g.stop_reason;
    j["timings"] = {{"prompt_ms", g.prompt_ms},
                    {"gen_ms", g.gen_ms},
                    {"prompt_tokens_per_s",
                     g.prompt_ms > 0 ? 1000.0 * static_cast<double>(g.prompt_tokens.size()) / g.prompt_ms : 0.0},
                    {"tokens_per_s", tps}};
    // What the run touched: the range's weights (mapped, not copied), the KV cache positions
    // written, and the process's peak resident set.
    const uint64_t kv_used = static_cast<uint64_t>(g.prompt_tokens.size() + g.tokens.size()) *
                             e.cache().n_layers() * 2 * e.cache().kv_dim() * sizeof(uint16_t);
    j["memory"] = {{"peak_rss_bytes", PeakRssBytes()},
                   {"weights_bytes", e.model().bound_weight_bytes()},
                   {"kv_cache_reserved_bytes", e.cache().bytes()},
                   {"kv_cache_used_bytes", kv_used}};
    std::printf("%s\n", j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
  } else {
    std::printf("\n");
    std::fprintf(stderr, "[%zu prompt tokens in %.1f ms, %zu generated in %.1f ms (%.2f tok/s), stop: %s]\n",
                 g.prompt_tokens.size(), g.prompt_ms, g.tokens.size(), g.gen_ms, tps,
                 g.stop_reason.c_str());
  }
  return 0;
}

}  // namespace

Runner AddRunCommand(CLI::App& app) {
  auto a = std::make_shared<RunArgs>();
  CLI::App* sub = app.add_subcommand("run", "Generate text from a prompt");
  sub->add_option("--model,-m", a->model,
                  "GGUF model file or reference (hf://OWNER/REPO/FILE.gguf, OWNER/REPO:QUANT, URL; "
                  "pulled on first use)")->required();
  sub->add_option("--prompt,-p", a->prompt, "Prompt text")->required();
  sub->add_option("--max-tokens,-n", a->max_tokens, "Maximum tokens to generate")->check(CLI::Range(0, 1 << 24));
  sub->add_option("--temperature,--temp", a->temperature, "Sampling temperature (0 = greedy)");
  sub->add_option("--seed,-s", a->seed, "RNG seed (default: random)");
  sub->add_option("--threads,-t", a->threads, "Threads (default: all cores)")->check(CLI::Range(0, 1024));
  sub->add_option("--ctx,-c", a->ctx, "Context size in tokens")->check(CLI::Range(1, 1 << 24));
  sub->add_option("--top-k", a->top_k, "Top-k (0 = off)");
  sub->add_option("--top-p", a->top_p, "Top-p (1 = off)");
  sub->add_option("--min-p", a->min_p, "Min-p (0 = off)");
  sub->add_option("--repeat-penalty", a->repeat_penalty, "Repetition penalty (1 = off)");
  sub->add_option("--presence-penalty", a->presence_penalty, "Presence penalty");
  sub->add_option("--frequency-penalty", a->frequency_penalty, "Frequency penalty");
  sub->add_flag("--chat", a->chat, "Apply the model's chat template to the prompt as one user turn");
  sub->add_flag("--json", a->json, "Print one JSON object with tokens, text and timings");
  return [a] { return Run(*a); };
}

}  // namespace strata::cli
