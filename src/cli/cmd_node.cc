// strata node: serve a model over HTTP (OpenAI-compatible API, continuous batching).
#include <memory>

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
  return [o] {
    const Status st = node::RunNode(*o);
    return st.ok() ? 0 : Fail(st.message());
  };
}

}  // namespace strata::cli
