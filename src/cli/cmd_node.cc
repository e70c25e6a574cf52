// strata node: serve a model over HTTP (OpenAI-compatible API, continuous batching).
#include <cstdlib>
#include <memory>
#include <string>

#include "cli/commands.h"
#include "node/server.h"

namespace strata::cli {

Runner AddNodeCommand(CLI::App& app) {
  auto o = std::make_shared<node::NodeOptions>();
  CLI::App* sub = app.add_subcommand("node", "Serve a model over HTTP (OpenAI-compatible API)");
  sub->add_option("--model,-m", o->model_path, "GGUF model file")->required();
  sub->add_option("--host", o->host, "Address to listen on")->capture_default_str();
  sub->add_option("--port", o->port, "TCP port (0: any free port)")
      ->check(CLI::Range(0, 65535))->capture_default_str();
  sub->add_option("--parallel", o->parallel, "Sequences decoded together (slots)")
      ->check(CLI::Range(1, 256))->capture_default_str();
  sub->add_option("--ctx,-c", o->ctx, "Context size per slot in tokens")
      ->check(CLI::Range(8, 1 << 24))->capture_default_str();
  sub->add_option("--threads,-t", o->threads, "Compute threads (0: all cores)")
      ->check(CLI::Range(0, 1024));
  sub->add_option("--batch", o->n_batch, "Tokens per forward step")
      ->check(CLI::Range(1, 1 << 16))->capture_default_str();
  sub->add_option("--api-key", o->api_key, "Require 'Authorization: Bearer KEY'");
  sub->add_option("--reasoning-format", o->reasoning_format,
                  "deepseek: <think> text goes to reasoning_content; none: left in content")
      ->check(CLI::IsMember({"deepseek", "none"}))->capture_default_str();
  sub->add_option("--max-queue", o->max_queue, "Requests that may wait for a slot (beyond: 503)")
      ->check(CLI::Range(0, 1 << 20))->capture_default_str();
  sub->add_option("--timeout", o->request_timeout_s, "Per-request generation timeout, seconds (0: none)")
      ->check(CLI::Range(0.0, 1e7))->capture_default_str();
  sub->add_option("--idle-timeout", o->idle_timeout_s, "Seconds to wait for a request on a connection")
      ->check(CLI::Range(0.1, 1e6))->capture_default_str();
  sub->add_option("--body-limit", o->body_limit, "Largest request body in bytes (beyond: 413)")
      ->capture_default_str();
  // Pipeline mode (docs/pipeline.md).
  auto layers = std::make_shared<std::string>();
  auto next = std::make_shared<std::string>();
  sub->add_option("--layers", *layers,
                  "Pipeline mode: serve only layers A-B (inclusive, e.g. 0-13); the stage with "
                  "layer 0 is the head and serves the HTTP API");
  sub->add_option("--next", *next, "Pipeline mode: the next stage's stage port, HOST:PORT");
  sub->add_option("--stage-port", o->stage_port,
                  "Pipeline mode: port on which a stage after the head listens for its upstream")
      ->check(CLI::Range(1, 65535));
  sub->add_option("--cluster-secret", o->cluster_secret,
                  "Pipeline mode: shared secret of the stages (default: $STRATA_CLUSTER_SECRET)");
  sub->add_option("--activations", o->activations, "Pipeline mode: activations between stages")
      ->check(CLI::IsMember({"f32", "q8"}))->capture_default_str();
  sub->add_option("--micro-batches", o->micro_batches,
                  "Pipeline head: micro-batches (steps) in flight through the pipeline")
      ->check(CLI::Range(1, 64))->capture_default_str();
  return [o, layers, next] {
    if (!layers->empty()) {
      int a = -1, b = -1;
      char tail = 0;
      if (std::sscanf(layers->c_str(), "%d-%d%c", &a, &b, &tail) != 2 || a < 0 || b < a)
        return Fail("--layers must be A-B with 0 <= A <= B (got '" + *layers + "')");
      o->first_layer = a;
      o->last_layer = b;
    }
    if (!next->empty()) {
      const size_t colon = next->rfind(':');
      int port = 0;
      if (colon == std::string::npos || colon == 0 ||
          std::sscanf(next->c_str() + colon + 1, "%d", &port) != 1 || port < 1 || port > 65535)
        return Fail("--next must be HOST:PORT (got '" + *next + "')");
      o->next_host = next->substr(0, colon);
      o->next_port = port;
      if (o->first_layer < 0) return Fail("--next needs --layers");
    }
    if (o->cluster_secret.empty()) {
      if (const char* env = std::getenv("STRATA_CLUSTER_SECRET")) o->cluster_secret = env;
    }
    const Status st = node::RunNode(*o);
    return st.ok() ? 0 : Fail(st.message());
  };
}

}  // namespace strata::cli
