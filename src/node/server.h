// `strata node`: an HTTP/1.1 server (Boost.Beast on an Asio event loop, one coroutine per
// connection) in front of a continuous-batching Scheduler. Endpoints: POST /inference,
// POST /v1/completions, POST /v1/chat/completions (JSON or SSE), GET /v1/models,
// GET /health, GET /metrics.
#pragma once

#include <string>

#include "base/status.h"

namespace strata::node {

struct NodeOptions {
  std::string model_path;
  std::string alias;  // the served model id ("": the file name), as llama-server's --alias
  std::string host = "127.0.0.1";
  int port = 8080;                   // 0: any free port (printed when listening)
  int parallel = 4;                  // sequence slots decoded together
  int ctx = 4096;                    // KV positions per slot
  int threads = 0;                   // compute threads (0: all cores)
  int n_batch = 512;                 // tokens per forward step
  std::string cache_type_k = "f16";  // KV cache types: f16, q8_0, q4_0 (llama.cpp's names)
  std::string cache_type_v = "f16";
  bool mmap = false;  // weights left in the file mapping (EngineOptions::mmap)
  // Speculative decoding (docs/speculative.md; llama-server's flag names): a draft model
  // ("": none) and/or draft-free n-gram lookup (spec_type "ngram-simple"); drafted tokens at
  // most / at least per step, the draft model's minimum top probability, the lookup's longest
  // n-gram, and the most generating sequences that still speculate (0: parallel / 2).
  std::string model_draft;
  std::string spec_type = "none";  // or "ngram-simple"
  int draft_max = 16;
  int draft_min = 0;
  float draft_p_min = 0.75f;
  int draft_vocab = 0;  // the draft proposes only ids below this (0: all)
  int spec_ngram_size_n = 3;
  int spec_max_seqs = 0;
  std::string api_key;                        // "": no authentication
  std::string admin_key;                      // "": /metrics takes api_key; else it needs this key
  std::string reasoning_format = "deepseek";  // or "none"
  // Chat template family for every chat rendering (deepseek-r1, qwen2.5, llama3.1, chatml);
  // "": the GGUF's, or DeepSeek-R1's as an announced fallback.
  std::string chat_template;
  // Chat: special-token texts inside message contents become those tokens (a user can then
  // write turn markers such as "<｜Assistant｜>"). Off: contents are plain text, only the
  // template's own markers are special.
  bool parse_special_in_content = false;
  // Thinking (docs/constrained-decoding.md): the most tokens a request may think (-1:
  // unlimited; a request's thinking_budget may lower it, never raise it), and the text
  // generated before "</think>" when a budget ends the thinking.
  int reasoning_budget = -1;
  std::string reasoning_budget_message;
  int max_queue = 64;                    // requests waiting for a slot; beyond: 503
  double request_timeout_s = 600;        // per generation
  double idle_timeout_s = 30;            // waiting for a request (idle keep-alive connections)
  double request_read_timeout_s = 30;    // reading one whole request (headers and body)
  int max_connections = 2048;            // open client connections (0: unlimited)
  int max_connections_per_client = 512;  // per client address (0: unlimited)
  size_t pipelined_limit = 1u << 20;     // bytes a client may send ahead while a request runs
  size_t body_limit = 8u << 20;          // bytes; larger bodies get 413
  int http_threads = 2;                  // event loop threads

  // Pipeline mode (docs/pipeline.md). Layers [first_layer, last_layer] (inclusive) of the model;
  // -1: all. The head (first_layer 0) serves the HTTP API and needs `next`; a later stage
  // listens for its upstream on stage_port and needs `next` unless it holds the last layer.
  int first_layer = -1, last_layer = -1;
  std::string next_host;
  int next_port = 0;
  int stage_port = 0;
  std::string cluster_secret;
  std::string activations = "f32";  // or "q8": activations between stages
  int micro_batches = 4;            // head: steps in flight through the pipeline
  // Head: a stage that dies and is back within this long loses no request (they are replayed
  // into the re-formed pipeline); past it they fail. 0: fail as soon as the pipeline does.
  int stage_grace_ms = 10000;

  // Resource monitoring (src/http/resources.h): warning thresholds in percent (0: off), the
  // sampling interval, and the directory whose filesystem's use is reported ("": the model's).
  double warn_cpu_percent = 90, warn_memory_percent = 90, warn_disk_percent = 90;
  int resource_interval_ms = 5000;
  std::string disk_path;
};

// Listens, loads the model in the background (GET /health answers 503 "loading" meanwhile)
// and serves until SIGINT/SIGTERM. Errors: the address cannot be bound, the model fails to load.
Status RunNode(const NodeOptions& opts);

}  // namespace strata::node
