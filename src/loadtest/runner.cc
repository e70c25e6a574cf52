#include "loadtest/runner.h"

#include <chrono>
#include <fstream>
#include <random>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <nlohmann/json.hpp>

namespace strata::loadtest {
namespace {

namespace asio = boost::asio;
using Clock = std::chrono::steady_clock;
using nlohmann::json;

// Common English words that are single tokens in the GPT-2/Qwen/Llama-3 BPE vocabularies
// when preceded by a space.
const char* const kWords[] = {
    "the",      "time",   "people", "year",     "way",   "day",    "man",     "thing",  "woman",
    "life",     "child",  "world",  "school",   "state", "family", "student", "group",  "country",
    "problem",  "hand",   "part",   "place",    "case",  "week",   "company", "system", "program",
    "question", "work",   "number", "night",    "point", "home",   "water",   "room",   "mother",
    "area",     "money",  "story",  "fact",     "month", "lot",    "right",   "study",  "book",
    "eye",      "job",    "word",   "business", "issue", "side",   "kind",    "head",   "house",
    "service",  "friend", "father", "power",    "hour",  "game",   "line",    "end"};

std::string MakeBody(const LoadOptions& o, const json& prompt_or_messages) {
  json j = json::object();
  if (!o.model.empty()) j["model"] = o.model;
  if (o.chat) {
    j["messages"] = prompt_or_messages.is_array()
                        ? prompt_or_messages
                        : json::array({{{"role", "user"}, {"content", prompt_or_messages}}});
  } else {
    j["prompt"] = prompt_or_messages;
  }
  j["max_tokens"] = o.output_tokens;
  j["temperature"] = o.temperature;
  j["stream"] = o.call.stream;
  if (o.call.stream) j["stream_options"] = {{"include_usage", true}};
  if (o.ignore_eos) {
    j["ignore_eos"] = true;
    j["min_tokens"] = o.output_tokens;
  }
  return j.dump();
}

int64_t EstimateTokens(const std::string& text) {
  int64_t words = 0;
  bool in = false;
  for (char c : text) {
    const bool space = c == ' ' || c == '\n' || c == '\t';
    if (!space && !in) ++words;
    in = !space;
  }
  return words + static_cast<int64_t>(text.size()) / 40;  // punctuation, long words
}

Result<std::vector<json>> ReadPrompts(const std::string& path, bool chat) {
  std::ifstream in(path);
  if (!in) return Errorf("cannot read prompts file %s", path.c_str());
  std::vector<json> out;
  std::string line;
  int n = 0;
  while (std::getline(in, line)) {
    ++n;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    if (line[0] != '{') {
      out.emplace_back(line);
      continue;
    }
    const json j = json::parse(line, nullptr, false);
    if (!j.is_object()) return Errorf("%s:%d: not a JSON object", path.c_str(), n);
    if (chat && j.contains("messages") && j["messages"].is_array()) out.push_back(j["messages"]);
    else if (j.contains("prompt") && j["prompt"].is_string()) out.push_back(j["prompt"]);
    else if (j.contains("text") && j["text"].is_string()) out.push_back(j["text"]);
    else return Errorf("%s:%d: needs \"prompt\" (or \"messages\" for chat)", path.c_str(), n);
  }
  if (out.empty()) return Errorf("%s: no prompts", path.c_str());
  return out;
}

std::string PromptText(const json& p) {
  if (p.is_string()) return p.get<std::string>();
  std::string s;
  for (const json& m : p)
    if (m.is_object() && m.contains("content") && m["content"].is_string())
      s += m["content"].get<std::string>() + " ";
  return s;
}

struct LevelState {
  LevelState(const Target& t_, const LoadOptions& o_, const Workload& w_, const Level& l_,
             const std::function<void(size_t, size_t)>& d)
      : t(t_), o(o_), w(w_), level(l_), on_done(d) {}
  const Target& t;
  const LoadOptions& o;
  const Workload& w;
  const Level& level;
  const std::function<void(size_t, size_t)>& on_done;
  Clock::time_point end;  // duration mode
  size_t next = 0, in_flight = 0, total = 0;
  std::vector<RequestResult> results;

  bool MoreToSend() const {
    return o.duration_s > 0 ? Clock::now() < end : next < static_cast<size_t>(o.requests);
  }
  asio::awaitable<void> One(size_t i) {
    const size_t k = PromptIndex(level, i, w.bodies.size());
    RequestResult r = co_await Call(t, w.bodies[k], o.call);
    r.prompt_estimate = w.prompt_estimates[k];
    results.push_back(std::move(r));
    --in_flight;
    if (on_done) on_done(results.size(), total);
  }
  asio::awaitable<void> Worker() {
    while (MoreToSend()) {
      ++in_flight;
      co_await One(next++);
    }
  }
  asio::awaitable<void> Arrivals(double rate, int cap, uint64_t seed) {
    std::mt19937_64 rng(seed);
    std::exponential_distribution<double> gap(rate);
    asio::steady_timer timer(co_await asio::this_coro::executor);
    boost::system::error_code ec;
    while (MoreToSend()) {
      while (cap > 0 && in_flight >= static_cast<size_t>(cap)) {
        timer.expires_after(std::chrono::milliseconds(1));
        co_await timer.async_wait(asio::redirect_error(asio::use_awaitable, ec));
      }
      ++in_flight;
      asio::co_spawn(timer.get_executor(), One(next++), asio::detached);
      timer.expires_after(
          std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(gap(rng))));
      co_await timer.async_wait(asio::redirect_error(asio::use_awaitable, ec));
    }
  }
};

}  // namespace

std::string SyntheticPrompt(int n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  constexpr size_t kCount = sizeof(kWords) / sizeof(kWords[0]);
  std::string s;
  for (int i = 0; i < n; ++i) {
    if (i) s += ' ';
    s += kWords[rng() % kCount];
  }
  return s;
}

size_t FirstPrompt(const LoadOptions& o, size_t k) {
  return static_cast<size_t>(std::max(0, o.warmup)) +
         k * static_cast<size_t>(std::max(1, o.requests));
}

Result<Workload> BuildWorkload(const LoadOptions& o) {
  std::vector<json> prompts;
  if (!o.prompts_file.empty()) {
    STRATA_ASSIGN_OR_RETURN(prompts, ReadPrompts(o.prompts_file, o.chat));
  } else {
    const int n =
        std::max(64, std::max(0, o.warmup) + std::max(1, o.requests) * std::max(1, o.levels));
    for (int i = 0; i < n; ++i) prompts.emplace_back(SyntheticPrompt(o.prompt_tokens, o.seed + i));
  }
  Workload w;
  for (const json& p : prompts) {
    w.bodies.push_back(MakeBody(o, p));
    w.prompt_estimates.push_back(EstimateTokens(PromptText(p)));
  }
  return w;
}

std::string Level::Label() const {
  if (rate > 0) return StrFormat("rate %g/s", rate);
  return StrFormat("c=%d", concurrency);
}

LevelRun RunLevel(const Target& t, const LoadOptions& o, const Workload& w, const Level& level,
                  const std::function<void(size_t, size_t)>& on_done) {
  asio::io_context ioc(1);
  LevelState st(t, o, w, level, on_done);
  st.total = o.duration_s > 0 ? 0 : static_cast<size_t>(o.requests);
  const auto start = Clock::now();
  st.end = start +
           std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(o.duration_s));
  if (level.rate > 0) {
    asio::co_spawn(ioc, st.Arrivals(level.rate, level.concurrency, o.seed), asio::detached);
  } else {
    for (int i = 0; i < std::max(1, level.concurrency); ++i)
      asio::co_spawn(ioc, st.Worker(), asio::detached);
  }
  ioc.run();
  const double dur = std::chrono::duration<double>(Clock::now() - start).count();
  return {level, ComputeLevel(st.results, dur, o.call.stream)};
}

RequestResult Warmup(const Target& t, const LoadOptions& o, const Workload& w) {
  RequestResult first_failure;
  first_failure.ok = true;
  asio::io_context ioc(1);
  asio::co_spawn(
      ioc,
      [&]() -> asio::awaitable<void> {
        for (int i = 0; i < o.warmup; ++i) {
          RequestResult r = co_await Call(t, w.bodies[i % w.bodies.size()], o.call);
          if (!r.ok && first_failure.ok) first_failure = r;
        }
      },
      asio::detached);
  ioc.run();
  return first_failure;
}

}  // namespace strata::loadtest
