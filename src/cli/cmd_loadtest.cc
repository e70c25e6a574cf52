// strata loadtest: drive any OpenAI-compatible server (strata gateway or node, llama-server,
// vLLM, ...) at concurrency levels or a Poisson request rate and report TTFT, TPOT, ITL,
// end-to-end latency and throughput with vLLM's benchmark_serving definitions (docs/loadtest.md).
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "cli/commands.h"
#include "loadtest/report.h"
#include "loadtest/runner.h"

namespace strata::cli {
namespace {

using loadtest::Level;
using loadtest::LevelRun;

struct LoadtestArgs {
  loadtest::LoadOptions o;
  std::string endpoint = "chat";
  std::string concurrency = "1";
  std::string rates;
  int max_concurrency = 0;
  std::string json_out, svg_out, title;
  bool no_stream = false, no_progress = false;
};

Result<std::vector<double>> ParseList(const std::string& s, const char* flag) {
  std::vector<double> out;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ',')) {
    char* end = nullptr;
    const double v = std::strtod(item.c_str(), &end);
    if (item.empty() || *end != '\0' || !(v > 0))
      return Errorf("%s: bad value '%s'", flag, item.c_str());
    out.push_back(v);
  }
  if (out.empty()) return Errorf("%s: empty list", flag);
  return out;
}

class Progress {
 public:
  explicit Progress(bool on) : on_(on) {}
  void Update(const std::string& label, size_t done, size_t total, bool force = false) {
    if (!on_) return;
    const auto now = std::chrono::steady_clock::now();
    if (!force && now - last_ < std::chrono::milliseconds(100)) return;
    last_ = now;
    constexpr int kWidth = 30;
    if (total > 0) {
      const int fill = static_cast<int>(kWidth * done / total);
      std::fprintf(stderr, "\r%-12s [%s%s] %zu/%zu", label.c_str(), std::string(fill, '#').c_str(),
                   std::string(kWidth - fill, '.').c_str(), done, total);
    } else {
      std::fprintf(stderr, "\r%-12s %zu done", label.c_str(), done);
    }
    std::fflush(stderr);
  }
  void End() {
    if (on_) std::fprintf(stderr, "\n");
  }

 private:
  bool on_;
  std::chrono::steady_clock::time_point last_{};
};

bool WriteFile(const std::string& path, const std::string& data) {
  std::ofstream f(path, std::ios::binary);
  f << data;
  return static_cast<bool>(f);
}

int Loadtest(LoadtestArgs& a) {
  loadtest::LoadOptions& o = a.o;
  if (a.endpoint != "chat" && a.endpoint != "completions")
    return Fail("--endpoint must be chat or completions");
  o.chat = a.endpoint == "chat";
  o.call.stream = !a.no_stream;
  if (o.call.api_key.empty())
    if (const char* k = std::getenv("OPENAI_API_KEY")) o.call.api_key = k;
  const std::string path = o.chat ? "/v1/chat/completions" : "/v1/completions";
  auto target = loadtest::ParseTarget(o.url, path);
  if (!target.ok()) return Fail(target.status().message());
  if (o.requests < 1 && o.duration_s <= 0) return Fail("--requests must be >= 1");
  std::vector<Level> levels;
  if (!a.rates.empty()) {
    auto rates = ParseList(a.rates, "--rate");
    if (!rates.ok()) return Fail(rates.status().message());
    for (double r : rates.value()) levels.push_back({a.max_concurrency, r});
  } else {
    auto cs = ParseList(a.concurrency, "--concurrency");
    if (!cs.ok()) return Fail(cs.status().message());
    for (double c : cs.value()) levels.push_back({static_cast<int>(c), 0});
  }
  o.levels = static_cast<int>(levels.size());
  for (size_t k = 0; k < levels.size(); ++k) levels[k].first_prompt = loadtest::FirstPrompt(o, k);
  auto work = loadtest::BuildWorkload(o);
  if (!work.ok()) return Fail(work.status().message());
  o.progress = !a.no_progress && isatty(STDERR_FILENO);

  std::printf(
      "strata loadtest: %s%s, %s, %s\n", o.url.c_str(), target->path.c_str(),
      o.call.stream ? "streaming" : "not streaming",
      o.prompts_file.empty()
          ? StrFormat("prompts ~%d tokens, max_tokens %d", o.prompt_tokens, o.output_tokens).c_str()
          : ("prompts from " + o.prompts_file).c_str());
  if (o.warmup > 0) {
    const loadtest::RequestResult w = loadtest::Warmup(*target, o, *work);
    if (!w.ok)
      std::fprintf(stderr, "warning: warm-up request failed (%s: %s)\n", w.error.c_str(),
                   w.error_detail.c_str());
  }
  std::vector<LevelRun> runs;
  size_t completed = 0;
  for (const Level& level : levels) {
    Progress bar(o.progress);
    const std::string label = level.Label();
    LevelRun run = loadtest::RunLevel(*target, o, *work, level, [&](size_t done, size_t total) {
      bar.Update(label, done, total, done == total);
    });
    bar.End();
    completed += run.metrics.completed;
    std::printf("%s", loadtest::LevelText(run).c_str());
    std::fflush(stdout);
    runs.push_back(std::move(run));
  }
  if (!a.json_out.empty() &&
      !WriteFile(a.json_out, loadtest::ReportJson(o, target->path, runs).dump(2) + "\n"))
    return Fail("cannot write " + a.json_out);
  if (!a.svg_out.empty()) {
    const std::string title = a.title.empty() ? "strata loadtest: " + o.url : a.title;
    if (!WriteFile(a.svg_out, loadtest::RenderSvg(title, runs)))
      return Fail("cannot write " + a.svg_out);
  }
  if (completed == 0) return Fail("no request succeeded");
  return 0;
}

}  // namespace

Runner AddLoadtestCommand(CLI::App* sub) {
  auto a = std::make_shared<LoadtestArgs>();
  loadtest::LoadOptions& o = a->o;
  sub->add_option("--url", o.url, "Server base URL, e.g. http://127.0.0.1:8080")->required();
  sub->add_option("--endpoint", a->endpoint,
                  "chat (/v1/chat/completions) or completions (/v1/completions)")
      ->capture_default_str();
  sub->add_option("--api-key", o.call.api_key, "Bearer key (default: $OPENAI_API_KEY)");
  sub->add_option("--model", o.model, "\"model\" field of the requests (omitted when empty)");
  sub->add_option("--concurrency,-c", a->concurrency, "Requests in flight, or a sweep: 1,2,4,8")
      ->capture_default_str();
  sub->add_option("--rate", a->rates, "Poisson arrivals at R requests/s (a list sweeps: 0.5,1,2)");
  sub->add_option("--max-concurrency", a->max_concurrency,
                  "With --rate: cap on requests in flight (0: none)");
  sub->add_option("--requests,-n", o.requests, "Requests per level")->capture_default_str();
  sub->add_option("--duration", o.duration_s, "Seconds per level (instead of --requests)");
  sub->add_option("--prompt-tokens", o.prompt_tokens, "Synthetic prompt length (words ~ tokens)")
      ->capture_default_str();
  sub->add_option("--output-tokens,--max-tokens", o.output_tokens, "max_tokens of every request")
      ->capture_default_str();
  sub->add_flag("--ignore-eos", o.ignore_eos,
                "Send ignore_eos and min_tokens (fixed output length)");
  sub->add_option("--temperature", o.temperature, "Sampling temperature")->capture_default_str();
  sub->add_option("--prompts-file", o.prompts_file,
                  "JSONL ({\"prompt\"} or {\"messages\"}) or one prompt per line");
  sub->add_flag("--no-stream", a->no_stream,
                "Non-streamed requests (TTFT, TPOT, ITL not measured)");
  sub->add_option("--timeout", o.call.timeout_s, "Per-request timeout (s)")->capture_default_str();
  sub->add_option("--warmup", o.warmup, "Untimed requests before the first level")
      ->capture_default_str();
  sub->add_option("--seed", o.seed, "Seed of prompts and arrivals")->capture_default_str();
  sub->add_option("--json", a->json_out, "Write the report as JSON");
  sub->add_option("--svg", a->svg_out, "Write an SVG chart of throughput and latency per level");
  sub->add_option("--title", a->title, "Title of the SVG chart");
  sub->add_flag("--no-progress", a->no_progress,
                "No progress bar (it is drawn only on a terminal)");
  return [a] { return Loadtest(*a); };
}

}  // namespace strata::cli
