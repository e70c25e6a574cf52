// The load of `strata loadtest`: builds the request bodies (fixed token-ish lengths or a file
// of prompts) and runs one level (a fixed concurrency, or Poisson arrivals at a rate with a cap
// on concurrency) for a request count or a duration, on one event-loop thread.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "base/status.h"
#include "loadtest/client.h"
#include "loadtest/stats.h"

namespace strata::loadtest {

struct LoadOptions {
  std::string url;
  bool chat = true;  // /v1/chat/completions, else /v1/completions
  std::string model;
  CallOptions call;
  int prompt_tokens = 128;  // fixed-length prompts: about this many tokens
  int output_tokens = 64;   // max_tokens
  bool ignore_eos = false;  // also send ignore_eos and min_tokens = output_tokens
  double temperature = 0;
  std::string prompts_file;  // JSONL ({"prompt": ...} or {"messages": [...]}) or text lines
  int requests = 32;         // per level, unless duration_s > 0
  double duration_s = 0;     // per level: stop sending after this long
  int warmup = 1;            // untimed requests before the first level
  int levels = 1;            // levels to run: synthetic prompts are made for all of them
  uint64_t seed = 1;
  bool progress = false;  // draw a progress bar on stderr
};

// One request body per prompt, and the client's estimate of its prompt length.
struct Workload {
  std::vector<std::string> bodies;
  std::vector<int64_t> prompt_estimates;
};
Result<Workload> BuildWorkload(const LoadOptions& o);

// A prompt of about n tokens of ordinary English words (one token each in common BPE vocabularies).
std::string SyntheticPrompt(int n, uint64_t seed);

struct Level {
  int concurrency = 1;  // the cap in rate mode (0: none)
  double rate = 0;      // requests/s, Poisson arrivals; 0: closed loop at `concurrency`
  // The workload index of the level's first prompt. Each level (and the warm-up) gets prompts
  // of its own, so that a server's prompt cache (llama-server keeps recent prompts' KV) cannot
  // answer one level from what an earlier one sent: `FirstPrompt`.
  size_t first_prompt = 0;
  std::string Label() const;
};

// The first prompt of level k (0-based) when every level sends o.requests requests after
// o.warmup warm-up requests (the workload's prompts are used round robin past its end).
size_t FirstPrompt(const LoadOptions& o, size_t k);
// The prompt of the level's i-th request among n prompts.
inline size_t PromptIndex(const Level& level, size_t i, size_t n) {
  return (level.first_prompt + i) % n;
}

struct LevelRun {
  Level level;
  LevelMetrics metrics;
};

// Runs the level; `on_done` (may be empty) is told after every finished request.
LevelRun RunLevel(const Target& t, const LoadOptions& o, const Workload& w, const Level& level,
                  const std::function<void(size_t done, size_t total)>& on_done);

// The untimed warm-up requests; returns the first failure (ok when all passed).
RequestResult Warmup(const Target& t, const LoadOptions& o, const Workload& w);

}  // namespace strata::loadtest
