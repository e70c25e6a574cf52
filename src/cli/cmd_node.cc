// strata node: serve a model over HTTP (OpenAI-compatible API, continuous batching), alone or
// as a pipeline stage; settings from the command line and/or a node of cluster.yaml.
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>

#include "cli/commands.h"
#include "cli/log_setup.h"
#include "cluster/config.h"
#include "cluster/planner.h"
#include "model/kv_cache.h"
#include "node/server.h"

namespace strata::cli {
namespace {

struct NodeArgs {
  node::NodeOptions o;
  std::string layers, next;
  std::string config, name;
  std::string api_key_file, secret_file;
  std::string log_format;
  // Options given on the command line (they override the config file).
  CLI::Option *model = nullptr, *host = nullptr, *port = nullptr, *parallel = nullptr,
              *ctx = nullptr, *threads = nullptr, *stage_port = nullptr, *secret = nullptr,
              *layers_opt = nullptr, *next_opt = nullptr, *grace = nullptr,
              *reasoning_budget = nullptr, *cache_k = nullptr, *cache_v = nullptr, *alias = nullptr,
              *model_draft = nullptr, *spec_type = nullptr, *draft_max = nullptr,
              *draft_min = nullptr, *draft_p_min = nullptr, *draft_vocab = nullptr,
              *ngram_n = nullptr, *spec_max_seqs = nullptr;
};

bool Given(const CLI::Option* opt) { return opt != nullptr && opt->count() > 0; }

// The head of the pipeline that `name` belongs to: walk back along `next`.
std::string PipelineHead(const cluster::ClusterConfig& c, const std::string& name) {
  std::string head = name;
  for (size_t guard = 0; guard <= c.nodes.size(); ++guard) {
    const cluster::NodeSpec* prev = nullptr;
    for (const cluster::NodeSpec& n : c.nodes)
      if (n.next == head) prev = &n;
    if (!prev) break;
    head = prev->name;
  }
  return head;
}

// layers: auto -> this node's range of the plan every node of the pipeline computes alike
// (same file, same inputs: the plan is a pure function of them).
Status PlanLayers(const cluster::ClusterConfig& c, const cluster::NodeSpec& self,
                  const std::string& model_path, int* first, int* last) {
  const std::string head = PipelineHead(c, self.name);
  auto nodes = cluster::PipelineNodesFromConfig(c, head);
  if (!nodes.ok()) return nodes.status();
  auto mem = cluster::ModelMemoryFromGguf(model_path);
  if (!mem.ok()) return mem.status();
  // Inputs every stage agrees on: the file's values, not this process's overrides.
  cluster::PlanOptions po;
  po.n_ctx = 0;
  po.n_parallel = 0;
  // KV types: the widest any stage uses (f16 > q8_0 > q4_0), so that no stage is short.
  auto widest = [](DType a, const std::string& b) {
    const DType t = ParseKvType(b).ok() ? ParseKvType(b).value() : DType::F16;
    return Info(t).block_bytes * Info(a).block_size > Info(a).block_bytes * Info(t).block_size ? t
                                                                                               : a;
  };
  po.cache_type_k = po.cache_type_v = DType::Q4_0;
  for (const cluster::PlanNode& pn : nodes.value()) {
    const cluster::NodeSpec* n = c.FindNode(pn.name);
    po.cache_type_k = widest(po.cache_type_k, n->cache_type_k);
    po.cache_type_v = widest(po.cache_type_v, n->cache_type_v);
    po.n_ctx = std::max(po.n_ctx, n->ctx);
    po.n_parallel = std::max(po.n_parallel, n->parallel);
  }
  auto plan = cluster::PlanPipeline(mem.value(), nodes.value(), po);
  if (!plan.ok()) return Errorf("layers: auto: %s", plan.status().message().c_str());
  for (const cluster::StagePlan& s : plan.value().stages) {
    if (s.node != self.name) continue;
    *first = s.first;
    *last = s.last - 1;
    std::fprintf(stderr,
                 "strata node: planned layers %s of %d for node '%s' (pipeline from '%s')\n",
                 cluster::LayerRangeText(s.first, s.last).c_str(), plan.value().n_layers,
                 self.name.c_str(), head.c_str());
    return Status::Ok();
  }
  return Errorf("the plan of the pipeline from '%s' has no stage for node '%s'", head.c_str(),
                self.name.c_str());
}

// Fills what the command line left unset from node `a.name` of `a.config`.
Status ApplyConfig(NodeArgs& a) {
  auto cfg = cluster::LoadClusterConfig(a.config);
  if (!cfg.ok()) return cfg.status();
  const cluster::ClusterConfig& c = cfg.value();
  if (a.name.empty()) return Status::Error("--config needs --name: which node of the file this is");
  const cluster::NodeSpec* self = c.FindNode(a.name);
  if (!self) return Errorf("%s: no node is named '%s'", a.config.c_str(), a.name.c_str());
  node::NodeOptions& o = a.o;
  if (!Given(a.model)) {
    if (c.model.path.empty()) return Errorf("%s: model.path is not set", a.config.c_str());
    // A relative path is relative to the file's directory.
    std::filesystem::path p(c.model.path);
    if (p.is_relative()) p = std::filesystem::path(a.config).parent_path() / p;
    o.model_path = p.string();
  }
  if (!Given(a.alias) && !c.model.name.empty()) o.alias = c.model.name;
  if (!Given(a.host)) o.host = self->host;
  if (!Given(a.port)) o.port = self->port;
  if (!Given(a.stage_port) && self->stage_port > 0) o.stage_port = self->stage_port;
  if (!Given(a.threads)) o.threads = self->threads;
  if (!Given(a.parallel)) o.parallel = self->parallel;
  if (!Given(a.ctx)) o.ctx = self->ctx;
  if (!Given(a.cache_k)) o.cache_type_k = self->cache_type_k;
  if (!Given(a.cache_v)) o.cache_type_v = self->cache_type_v;
  if (!Given(a.grace)) o.stage_grace_ms = self->stage_grace_ms;
  if (!Given(a.model_draft) && !self->model_draft.empty()) {
    std::filesystem::path p(self->model_draft);
    if (p.is_relative()) p = std::filesystem::path(a.config).parent_path() / p;
    o.model_draft = p.string();
  }
  if (!Given(a.spec_type)) o.spec_type = self->spec_type;
  if (!Given(a.draft_max)) o.draft_max = self->draft_max;
  if (!Given(a.draft_min)) o.draft_min = self->draft_min;
  if (!Given(a.draft_p_min)) o.draft_p_min = static_cast<float>(self->draft_p_min);
  if (!Given(a.draft_vocab)) o.draft_vocab = self->draft_vocab;
  if (!Given(a.ngram_n)) o.spec_ngram_size_n = self->spec_ngram_size_n;
  if (!Given(a.spec_max_seqs)) o.spec_max_seqs = self->spec_max_seqs;
  if (!Given(a.reasoning_budget)) o.reasoning_budget = self->reasoning_budget;
  if (!Given(a.secret) && a.secret_file.empty() && !c.cluster.secret.empty())
    o.cluster_secret = c.cluster.secret;
  const bool in_pipeline = !self->next.empty() || c.ModeOf(*self) == "stage";
  if (!Given(a.next_opt) && !self->next.empty()) {
    const cluster::NodeSpec* next = c.FindNode(self->next);
    if (!next)
      return Errorf("%s:%d: node '%s': next node '%s' does not exist", a.config.c_str(), self->line,
                    self->name.c_str(), self->next.c_str());
    if (next->stage_port <= 0)
      return Errorf("%s:%d: node '%s' is the next stage of '%s' but has no stage_port",
                    a.config.c_str(), next->line, next->name.c_str(), self->name.c_str());
    a.next = next->host + ":" + std::to_string(next->stage_port);
  }
  if (!Given(a.layers_opt) && in_pipeline) {
    if (self->layers_auto) {
      int first = -1, last = -1;
      STRATA_RETURN_IF_ERROR(PlanLayers(c, *self, o.model_path, &first, &last));
      a.layers = std::to_string(first) + "-" + std::to_string(last);
    } else {
      a.layers = std::to_string(self->layer_begin) + "-" + std::to_string(self->layer_end);
    }
  }
  return Status::Ok();
}

// Speculative decoding (docs/speculative.md), with llama-server's flag names.
void AddSpecOptions(CLI::App* sub, NodeArgs* a) {
  node::NodeOptions* o = &a->o;
  a->model_draft = sub->add_option("--model-draft", o->model_draft,
                                   "Speculative decoding: draft model (GGUF with the model's "
                                   "tokenizer, e.g. a smaller or lower-precision sibling)");
  a->spec_type = sub->add_option("--spec-type", o->spec_type,
                                 "Speculative decoding without a draft model: ngram-simple "
                                 "drafts by looking up the sequence's own earlier n-grams")
                     ->check(CLI::IsMember({"none", "ngram-simple"}))
                     ->capture_default_str();
  a->draft_max = AddRangeOption(sub, "--draft-max,--draft,--draft-n", o->draft_max,
                                "Speculative decoding: tokens drafted at most per step", 0, 256);
  a->draft_min = AddRangeOption(sub, "--draft-min,--draft-n-min", o->draft_min,
                                "Speculative decoding: shorter drafts are not verified", 0, 256);
  a->draft_p_min =
      AddRangeOption(sub, "--draft-p-min", o->draft_p_min,
                     "Speculative decoding: the draft model stops drafting when its best token's "
                     "probability is below this (greedy drafting)",
                     0.0, 1.0);
  a->draft_vocab = AddRangeOption(
      sub, "--draft-vocab", o->draft_vocab,
      "Speculative decoding: the draft model scores and proposes only token ids below this "
      "(a multiple of 64; BPE vocabularies list frequent tokens first, so a smaller draft head "
      "drafts faster; 0: every id)",
      0, 1 << 24);
  a->ngram_n =
      AddRangeOption(sub, "--spec-ngram-size-n", o->spec_ngram_size_n,
                     "ngram-simple: the longest n-gram looked up (then shorter ones)", 1, 64);
  a->spec_max_seqs =
      AddRangeOption(sub, "--spec-max-seqs", o->spec_max_seqs,
                     "Speculative decoding pauses while more sequences generate than this "
                     "(a full batch already reuses the weights; 0: --parallel / 2)",
                     0, 4096);
}

}  // namespace

Runner AddNodeCommand(CLI::App* sub) {
  auto a = std::make_shared<NodeArgs>();
  node::NodeOptions* o = &a->o;
  a->model =
      sub->add_option("--model,-m", o->model_path,
                      "GGUF model file or reference (hf://OWNER/REPO/FILE.gguf, OWNER/REPO:QUANT, "
                      "URL; pulled on first use), or model.path of --config");
  sub->add_option("--config", a->config,
                  "cluster.yaml: take this node's settings from the file (with --name); "
                  "options given here override it");
  sub->add_option("--name", a->name, "This node's name in --config");
  a->alias = sub->add_option("--alias", o->alias,
                             "Model id served in /v1/models and accepted in \"model\" (default: "
                             "the file name; with --config: model.name)");
  a->host = sub->add_option("--host", o->host, "Address to listen on")->capture_default_str();
  a->port = AddRangeOption(sub, "--port", o->port, "TCP port (0: any free port)", 0, 65535);
  a->parallel =
      AddRangeOption(sub, "--parallel", o->parallel, "Sequences decoded together (slots)", 1, 256);
  a->ctx = AddRangeOption(sub, "--ctx,-c", o->ctx, "Context size per slot in tokens", 8, 1 << 24);
  a->threads = sub->add_option("--threads,-t", o->threads, "Compute threads (0: all cores)")
                   ->check(CLI::Range(0, 1024));
  AddRangeOption(sub, "--batch", o->n_batch, "Tokens per forward step", 1, 1 << 16);
  std::tie(a->cache_k, a->cache_v) = AddKvCacheTypeOptions(sub, &o->cache_type_k, &o->cache_type_v);
  AddMmapOption(sub, &o->mmap);
  AddSpecOptions(sub, a.get());
  sub->add_option("--api-key", o->api_key,
                  "Require 'Authorization: Bearer KEY' (visible in ps: prefer --api-key-file "
                  "or $STRATA_API_KEY)");
  sub->add_option("--api-key-file", a->api_key_file, "Read the --api-key from this file");
  sub->add_option("--reasoning-format", o->reasoning_format,
                  "deepseek: <think> text goes to reasoning_content; none: left in content")
      ->check(CLI::IsMember({"deepseek", "none"}))
      ->capture_default_str();
  a->reasoning_budget =
      AddRangeOption(sub, "--reasoning-budget", o->reasoning_budget,
                     "Most thinking tokens per request (-1: unlimited; a request's thinking_budget "
                     "may lower it)",
                     -1, 1 << 24);
  sub->add_option("--reasoning-budget-message", o->reasoning_budget_message,
                  "Text generated before </think> when a thinking budget ends the thinking");
  AddChatTemplateOption(sub, &o->chat_template,
                        "Chat template family for every chat endpoint (default: the GGUF's; a "
                        "model without a recognised one falls back to deepseek-r1, announced)");
  sub->add_flag("--parse-special-in-content", o->parse_special_in_content,
                "Chat: tokenize special-token texts inside message contents as special tokens "
                "(off: contents are plain text, so a user cannot forge turn markers)");
  AddRangeOption(sub, "--max-queue", o->max_queue,
                 "Requests that may wait for a slot (beyond: 503)", 0, 1 << 20);
  AddRangeOption(sub, "--timeout", o->request_timeout_s,
                 "Per-request generation timeout, seconds (0: none)", 0.0, 1e7);
  AddRangeOption(sub, "--idle-timeout", o->idle_timeout_s,
                 "Seconds to wait for a request on a connection", 0.1, 1e6);
  sub->add_option("--body-limit", o->body_limit, "Largest request body in bytes (beyond: 413)")
      ->capture_default_str();
  AddRangeOption(sub, "--read-timeout", o->request_read_timeout_s,
                 "Seconds to read one whole request, headers and body (slow clients: closed)", 0.1,
                 1e6);
  AddRangeOption(sub, "--max-connections", o->max_connections,
                 "Open client connections (0: unlimited; beyond: an idle one is closed, else 503)",
                 0, 1 << 24);
  AddRangeOption(sub, "--max-connections-per-client", o->max_connections_per_client,
                 "Open connections per client address (0: unlimited)", 0, 1 << 24);
  sub->add_option("--admin-key", o->admin_key,
                  "Require 'Authorization: Bearer KEY' for /metrics (default: $STRATA_ADMIN_KEY)")
      ->envname("STRATA_ADMIN_KEY");
  // Pipeline mode (docs/pipeline.md).
  a->layers_opt =
      sub->add_option("--layers", a->layers,
                      "Pipeline mode: serve only layers A-B (inclusive, e.g. 0-13); the stage with "
                      "layer 0 is the head and serves the HTTP API");
  a->next_opt =
      sub->add_option("--next", a->next, "Pipeline mode: the next stage's stage port, HOST:PORT");
  a->stage_port =
      sub->add_option(
             "--stage-port", o->stage_port,
             "Pipeline mode: port on which a stage after the head listens for its upstream")
          ->check(CLI::Range(1, 65535));
  a->secret = sub->add_option(
      "--cluster-secret", o->cluster_secret,
      "Pipeline mode: shared secret of the stages, >= 32 bytes (visible in ps: prefer "
      "--cluster-secret-file or $STRATA_CLUSTER_SECRET)");
  sub->add_option("--cluster-secret-file", a->secret_file,
                  "Pipeline mode: read the cluster secret from this file");
  sub->add_option("--activations", o->activations, "Pipeline mode: activations between stages")
      ->check(CLI::IsMember({"f32", "q8"}))
      ->capture_default_str();
  AddRangeOption(sub, "--micro-batches", o->micro_batches,
                 "Pipeline head: micro-batches (steps) in flight through the pipeline", 1, 64);
  a->grace =
      AddRangeOption(sub, "--stage-grace-ms", o->stage_grace_ms,
                     "Pipeline head: a stage that dies and is back within this many ms loses no "
                     "request (replayed into the re-formed pipeline); 0: requests fail at once",
                     0, 3600000);
  AddLogFormatOption(sub, &a->log_format);
  AddRangeOption(sub, "--warn-cpu-percent", o->warn_cpu_percent,
                 "Log a warning (and flag it in /health, /metrics) above this host CPU % (0: off)",
                 0.0, 100.0);
  AddRangeOption(sub, "--warn-memory-percent", o->warn_memory_percent,
                 "Warn above this host memory % (0: off); the gateway can avoid such a node", 0.0,
                 100.0);
  AddRangeOption(sub, "--warn-disk-percent", o->warn_disk_percent,
                 "Warn above this disk % of the model's filesystem (0: off)", 0.0, 100.0);
  AddRangeOption(sub, "--resource-interval-ms", o->resource_interval_ms,
                 "Sampling interval of the host CPU / memory / disk figures", 100, 3600000);
  sub->add_option("--disk-path", o->disk_path,
                  "Directory whose filesystem use is reported (default: the model file's)");
  return [a, o] {
    if (!SetUpLogging(a->log_format, "node", a->name)) return 1;
    // --model may be a reference (hf://..., OWNER/REPO:QUANT, URL): pulled on first use.
    auto model = ResolveModelArg(o->model_path);
    if (!model.ok()) return Fail(model.status().message());
    o->model_path = model.value();
    if (!a->config.empty()) {
      const Status st = ApplyConfig(*a);
      if (!st.ok()) return Fail(st.message());
    } else if (!a->name.empty()) {
      return Fail("--name needs --config");
    }
    if (o->model_path.empty()) return Fail("--model (or --config with model.path) is required");
    if (!o->model_draft.empty()) {
      auto draft = ResolveModelArg(o->model_draft);
      if (!draft.ok()) return Fail(draft.status().message());
      o->model_draft = draft.value();
    }
    const std::string& layers = a->layers;
    const std::string& next = a->next;
    if (!layers.empty()) {
      int first = -1, last = -1;
      char tail = 0;
      if (std::sscanf(layers.c_str(), "%d-%d%c", &first, &last, &tail) != 2 || first < 0 ||
          last < first)
        return Fail("--layers must be A-B with 0 <= A <= B (got '" + layers + "')");
      o->first_layer = first;
      o->last_layer = last;
    }
    if (!next.empty()) {
      const size_t colon = next.rfind(':');
      int port = 0;
      if (colon == std::string::npos || colon == 0 ||
          std::sscanf(next.c_str() + colon + 1, "%d", &port) != 1 || port < 1 || port > 65535)
        return Fail("--next must be HOST:PORT (got '" + next + "')");
      o->next_host = next.substr(0, colon);
      o->next_port = port;
      if (o->first_layer < 0) return Fail("--next needs --layers");
    }
    // Secrets: the option, else its file, else the environment.
    auto key =
        cluster::ResolveSecret(o->api_key, a->api_key_file, "STRATA_API_KEY", "--api-key-file");
    if (!key.ok()) return Fail(key.status().message());
    o->api_key = key.value();
    auto secret = cluster::ResolveSecret(o->cluster_secret, a->secret_file, "STRATA_CLUSTER_SECRET",
                                         "--cluster-secret-file");
    if (!secret.ok()) return Fail(secret.status().message());
    o->cluster_secret = secret.value();
    const Status sst = cluster::CheckClusterSecret(o->cluster_secret, "--cluster-secret");
    if (!sst.ok()) return Fail(sst.message());
    const Status st = node::RunNode(*o);
    return st.ok() ? 0 : Fail(st.message());
  };
}

}  // namespace strata::cli
