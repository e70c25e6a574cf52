// Endpoints of the node: routing, authentication, health, models, metrics and generation
// (JSON and SSE).
#include <ctime>
#include <filesystem>
#include <random>

#include "base/log.h"
#include "base/mmap.h"
#include "base/timer.h"
#include "http/prom.h"
#include "node/server_impl.h"
#include "tokenizer/tool_calls.h"

namespace strata::node {

using nlohmann::json;

namespace {

using ::strata::http::BearerToken;
using ::strata::http::PathOf;

ApiError MakeError(int status, std::string message, std::string type, std::string code = "") {
  ApiError e;
  e.status = status;
  e.message = std::move(message);
  e.type = std::move(type);
  e.code = std::move(code);
  return e;
}

std::string OpenAiFinish(const std::string& reason) {
  return reason == "stop" ? "stop" : "length";  // length, timeout, context
}

// The error of a generation that ended with finish_reason "error" or "cancelled": a failure of
// this node (or its pipeline: 502 "pipeline_stage_failed"), never of the request, so the
// code tells a gateway that another node may serve it.
ApiError GenerationError(const SchedUpdate& u) {
  if (u.finish_reason == "cancelled")
    return MakeError(503, "the server is stopping", "unavailable_error", "server_stopping");
  const std::string code = u.error_code.empty() ? "internal_error" : u.error_code;
  return MakeError(code == "pipeline_stage_failed" ? 502 : 500, u.error, "server_error", code);
}

}  // namespace

bool Server::ModelMatches(const std::string& name) const {
  // The served id (--alias, cluster.yaml model.name, else the file name), the path, the file's
  // stem and the GGUF's general.name all name this model.
  if (name.empty() || name == model_id_ || name == o_.model_path) return true;
  if (name == std::filesystem::path(o_.model_path).filename().string()) return true;
  if (!model_name_.empty() && name == model_name_) return true;
  const std::string stem = std::filesystem::path(o_.model_path).stem().string();
  return name == stem;
}

Result<std::vector<int32_t>> Server::ChatTokens(const GenRequest& g, bool* in_reasoning) const {
  ChatRenderOptions opts;
  opts.enable_thinking = g.enable_thinking;
  if (g.tool_choice != "none") opts.tools = g.tools;  // "none": no tools in the prompt
  return ChatPromptTokens(*tok_, template_, g.messages, opts, o_.parse_special_in_content,
                          in_reasoning);
}

nlohmann::json Server::ChatTemplateJson() const {
  json j = {{"name", chat_.name}, {"source", chat_.source}, {"fallback", chat_.fallback}};
  if (chat_.note.empty()) return j;
  j["note"] = chat_.note;
  return j;
}

namespace {

// Whether the answer's tool-call markup is parsed into tool_calls.
bool ParsesTools(const GenRequest& g) {
  return g.endpoint == Endpoint::kChat && !g.tools.empty() && g.tool_choice != "none";
}

// Ids for calls just parsed; only the first call when parallel_tool_calls is false.
void AdoptCalls(const GenRequest& g, size_t already, std::vector<ToolCall>* calls) {
  if (!g.parallel_tool_calls) {
    const size_t room = already > 0 ? 0 : 1;
    if (calls->size() > room) calls->resize(room);
  }
  for (ToolCall& c : *calls) c.id = NewToolCallId();
}

}  // namespace

std::optional<ApiError> Server::CheckHeaders(const Request& req) const {
  const std::string_view path = PathOf(std::string_view(req.target().data(), req.target().size()));
  const bool get = req.method() == http::verb::get;
  const bool post = req.method() == http::verb::post;
  const bool known = path == "/health" || path == "/metrics" || path == "/v1/models" ||
                     path == "/inference" || path == "/v1/completions" ||
                     path == "/v1/chat/completions";
  const bool want_post =
      path == "/inference" || path == "/v1/completions" || path == "/v1/chat/completions";
  if (!known) return MakeError(404, "not found: " + std::string(path), "not_found_error");
  if ((want_post && !post) || (!want_post && !get))
    return MakeError(405, want_post ? "use POST" : "use GET", "invalid_request_error");
  // /metrics takes the admin key when one is set, else the API key.
  const std::string& key = path == "/metrics" && !o_.admin_key.empty() ? o_.admin_key : o_.api_key;
  if (path != "/health" && !key.empty() && !::strata::http::SecretEquals(BearerToken(req), key))
    return MakeError(401, "invalid or missing API key", "authentication_error", "invalid_api_key");
  return std::nullopt;
}

std::optional<::strata::http::Reply> Server::OnHeaders(const Request& req, const ClientStream&) {
  // Route and key are checked before the body is read: a request without a valid key never
  // gets its body buffered.
  auto err = CheckHeaders(req);
  if (!err || err->status != 401) return std::nullopt;  // the others are answered after it
  metrics_.CountHttp(err->status);
  const std::string_view target(req.target().data(), req.target().size());
  const bool plain = PathOf(target) == "/inference";
  return ErrorReply(*err, plain);
}

::strata::http::Reply Server::OnTransportError(int status, const std::string& message,
                                               const Request*) {
  metrics_.CountHttp(status);
  ApiError e;
  e.status = status;
  e.message = message;
  if (status == 503) e.type = "unavailable_error";
  ::strata::http::Reply r;
  r.status = status;
  r.body = ErrorJson(e);
  return r;
}

Task<bool> Server::OnRequest(ClientStream& s, Request& req) {
  co_return co_await Handle(s, req, &s.buffer());
}

Task<bool> Server::Handle(ClientStream& s, const Request& req, beast::flat_buffer* buf) {
  // (GCC 12 miscompiles string literals converted inside co_await expressions: errors are
  // built into locals first.)
  const std::string_view path = PathOf(std::string_view(req.target().data(), req.target().size()));
  ApiError err;
  bool failed = true;
  if (auto e = CheckHeaders(req)) {
    err = std::move(*e);
  } else if (path != "/health" && path != "/metrics" && !ready()) {
    err = MakeError(503, "the model is loading", "unavailable_error");
  } else if (path != "/health" && path != "/metrics" && is_stage()) {
    err = MakeError(503,
                    StrFormat("this node is pipeline stage [%d-%d] of %s: send requests to the "
                              "pipeline's head node (the one serving layer 0)",
                              o_.first_layer, o_.last_layer, model_id_.c_str()),
                    "unavailable_error", "pipeline_stage");
  } else {
    failed = false;
  }
  if (failed) co_return co_await SendError(s, req, err, path == "/inference");
  if (path == "/health") co_return co_await Health(s, req);
  if (path == "/metrics") {
    SchedulerStats st;
    const bool sched = ready() && sched_ != nullptr;
    if (sched) st = sched_->stats();
    std::string body = metrics_.Render(sched ? &st : nullptr, o_.model_path);
    if (ready()) body += PipelineMetrics();
    if (resources_) resources_->RenderMetrics(&body);
    ::strata::http::PromMetric("strata_http_connections", "gauge", "Open client connections.",
                               http_ ? http_->connections() : 0, &body);
    ::strata::http::PromMetric("strata_http_connections_refused_total", "counter",
                               "Connections refused over the connection caps.",
                               http_ ? static_cast<double>(http_->rejected_connections()) : 0,
                               &body);
    co_return co_await Send(s, req.version(), req.keep_alive(), 200, std::move(body),
                            "text/plain; version=0.0.4; charset=utf-8");
  }
  if (path == "/v1/models") {
    json model = {{"id", model_id_},
                  {"object", "model"},
                  {"created", started_},
                  {"owned_by", "strata"},
                  {"meta",
                   {{"n_ctx", o_.ctx},
                    {"n_ctx_train", model_->config().n_ctx_train},
                    {"n_vocab", model_->config().n_vocab},
                    {"n_layers", n_layers_},
                    {"slots", o_.parallel},
                    {"name", model_name_},
                    {"chat_template", ChatTemplateJson()}}}};
    if (demo_) {
      model["meta"]["demo"] = true;
      model["warning"] = kDemoWarning;
    }
    std::string body = Dump(json{{"object", "list"}, {"data", json::array({model})}});
    co_return co_await Send(s, req.version(), req.keep_alive(), 200, std::move(body));
  }
  const Endpoint ep = path == "/inference"        ? Endpoint::kInference
                      : path == "/v1/completions" ? Endpoint::kCompletions
                                                  : Endpoint::kChat;
  // The node's access log (STRATA_LOG=info), under the gateway's request id (X-Request-Id).
  const std::string rid = RequestIdOf(req);
  const std::string route(path);
  Timer timer;
  const bool keep = co_await Generate(s, req, buf, ep);
  STRATA_LOG_REQ(LogLevel::kInfo, rid, "%s done in %.1f ms", route.c_str(), timer.ElapsedMs());
  co_return keep;
}

Task<bool> Server::Health(ClientStream& s, const Request& req) {
  const bool ok = ready();
  json j;
  j["status"] = ok ? "healthy" : state_.load() == kFailed ? "error" : "loading";
  j["model_loaded"] = ok;
  j["memory_usage"] = CurrentRssBytes();
  if (ok && sched_ != nullptr) {
    const SchedulerStats st = sched_->stats();
    j["slots_busy"] = st.running;
    j["slots_total"] = st.slots_total;
    j["requests_waiting"] = st.waiting;
    j["layers"] = n_layers_;
  } else if (ok) {
    j["slots_busy"] = 0;
    j["slots_total"] = o_.parallel;
    j["layers"] = n_layers_;
  } else {
    j["slots_busy"] = 0;
    j["slots_total"] = o_.parallel;
    j["layers"] = 0;
  }
  j["model"] = model_id_;
  if (ok) j["chat_template"] = ChatTemplateJson();
  if (ok && model_ != nullptr) {
    // The KV cache this node reserved (its layers x slots x context in the cache types).
    const DType kt = ParseKvType(o_.cache_type_k).value(),
                vt = ParseKvType(o_.cache_type_v).value();
    j["kv_cache"] = {
        {"type_k", o_.cache_type_k},
        {"type_v", o_.cache_type_v},
        {"ctx", o_.ctx},
        {"bytes",
         KvCache::BytesFor(n_layers_, o_.parallel, o_.ctx, model_->config().kv_dim(), kt, vt)},
        {"bytes_per_token", KvCache::BytesFor(n_layers_, 1, 1, model_->config().kv_dim(), kt, vt)}};
  }
  if (demo_) {
    j["demo"] = true;
    j["warning"] = kDemoWarning;
  }
  if (resources_) j["resources"] = resources_->Json();
  if (pipeline()) {
    j["role"] = o_.first_layer == 0 ? "head" : o_.next_port ? "middle" : "tail";
    j["first_layer"] = o_.first_layer;
    j["last_layer"] = o_.last_layer;
    if (ok && head_) {
      j["next_connected"] = head_->link().connected();
      HeadChain(&j);
    }
    ::strata::net::LinkStats ls;
    if (ok && stage_ && stage_->next_stats(&ls)) j["next_connected"] = ls.connected;
  }
  std::vector<std::pair<std::string, std::string>> headers;
  if (!ok) headers.emplace_back("Retry-After", "1");
  co_return co_await Send(s, req.version(), req.keep_alive(), ok ? 200 : 503, Dump(j),
                          "application/json", headers);
}

// The head's view of its pipeline: "pipeline_state" (ok, recovering: a stage failed and the
// head waits for it within the grace period, down) and "stages" [{layers, addr, state}]: this
// head, the next stage and, when the next stage does not end the model, the rest behind it.
void Server::HeadChain(json* j) const {
  const ::strata::pipeline::PipelineHeadStats hs = head_->stats();
  const bool up = hs.link.connected;
  (*j)["pipeline_state"] = !up ? "down" : hs.degraded ? "recovering" : "ok";
  json stages = json::array();
  stages.push_back({{"layers", StrFormat("%d-%d", o_.first_layer, o_.last_layer)},
                    {"addr", StrFormat("%s:%d", o_.host.c_str(), o_.port)},
                    {"state", "up"}});
  const ::strata::net::StageInfo peer = head_->link().peer();
  const std::string next_addr = StrFormat("%s:%d", o_.next_host.c_str(), o_.next_port);
  if (peer.last > peer.first) {
    stages.push_back({{"layers", StrFormat("%u-%u", peer.first, peer.last - 1)},
                      {"addr", next_addr},
                      {"state", up ? "up" : "down"}});
    if (peer.last < peer.n_layers)
      stages.push_back({{"layers", StrFormat("%u-%u", peer.last, peer.n_layers - 1)},
                        {"addr", ""},
                        {"state", up ? "unknown" : "down"}});
  } else {  // never connected: its range is not known yet
    stages.push_back(
        {{"layers", StrFormat("%d-", o_.last_layer + 1)}, {"addr", next_addr}, {"state", "down"}});
  }
  (*j)["stages"] = std::move(stages);
}

SubmitResult Server::SubmitChoice(const SchedRequestParams& p, int choice,
                                  const std::shared_ptr<Pipe>& pipe) {
  SchedRequestParams params = p;
  params.sampler.seed += static_cast<uint64_t>(choice);  // choice i: seed + i
  // Each choice walks the grammar on its own, from the start (choice 0's may have advanced).
  if (params.constraint)
    params.constraint = std::make_shared<grammar::Matcher>(params.constraint->shared_automaton());
  Metrics* metrics = &metrics_;
  return sched_->Submit(std::move(params), [pipe, metrics, choice](const SchedUpdate& u) {
    if (u.token >= 0 && choice == 0) {  // token timing: of the first choice
      const auto now = Clock::now();
      if (!pipe->seen_token)
        metrics->ObserveTtft(std::chrono::duration<double>(now - pipe->start).count());
      else
        metrics->ObserveInterToken(std::chrono::duration<double>(now - pipe->last_token).count());
      pipe->seen_token = true;
      pipe->last_token = now;
    }
    if (choice == 0) {
      pipe->Push(u);
      return;
    }
    SchedUpdate tagged = u;
    tagged.choice = choice;
    pipe->Push(tagged);
  });
}

LogprobToken Server::LogprobOf(const SchedUpdate& u, bool as_ids) const {
  auto name = [&](int32_t id) {
    return as_ids ? "token_id:" + std::to_string(id) : tok_->TokenToPiece(id, true);
  };
  LogprobToken t;
  t.piece = name(u.logprob.id);
  t.logprob = u.logprob.logprob;
  for (const auto& [id, lp] : u.logprob.top) t.top.emplace_back(name(id), lp);
  return t;
}

std::string Server::PromptText(const GenRequest& g) const {
  return g.prompt_is_ids ? tok_->Decode(g.prompt_ids) : g.prompt;
}

Task<bool> Server::Generate(ClientStream& s, const Request& req, beast::flat_buffer* buf,
                            Endpoint ep) {
  const bool plain = ep == Endpoint::kInference;  // the plan's call: {"error": "..."}
  GenRequest g;
  ApiError err;
  if (!ParseGenRequest(ep, req.body(), &g, &err)) co_return co_await SendError(s, req, err, plain);
  if (!ModelMatches(g.model)) {
    err = MakeError(
        404, "the model '" + g.model + "' does not exist (this node serves '" + model_id_ + "')",
        "not_found_error", "model_not_found");
    co_return co_await SendError(s, req, err, plain);
  }

  if (g.top_logprobs >= 0 && (pipeline() || g.echo)) {
    err = BadRequest(pipeline() ? "logprobs are not available on a pipeline (its last stage "
                                  "samples): send the request to a single node"
                                : "'echo' with 'logprobs' is not supported (the prompt's "
                                  "log-probabilities are not computed)");
    co_return co_await SendError(s, req, err, plain);
  }
  bool in_reasoning = false;
  std::vector<int32_t> prompt;
  if (ep == Endpoint::kChat) {
    auto t = ChatTokens(g, &in_reasoning);
    if (!t.ok()) {
      err = BadRequest(t.status().message());
      co_return co_await SendError(s, req, err, plain);
    }
    prompt = std::move(t).value();
  } else if (g.prompt_is_ids) {
    prompt = g.prompt_ids;
  } else {
    prompt = tok_->Encode(g.prompt, true, true);
  }
  const int n_continued = static_cast<int>(g.continue_ids.size());
  if (n_continued > 0) {
    const int32_t n_vocab = tok_->n_vocab();
    for (size_t i = 0; i < g.continue_ids.size(); ++i) {
      if (g.continue_ids[i] >= n_vocab) {
        err = BadRequest(StrFormat("continue_token_ids[%zu] = %d is out of the vocabulary (0..%d)",
                                   i, g.continue_ids[i], n_vocab - 1));
        co_return co_await SendError(s, req, err, plain);
      }
    }
    prompt.insert(prompt.end(), g.continue_ids.begin(), g.continue_ids.end());
  }
  const int n_ctx = sched_->n_ctx();
  if (static_cast<int>(prompt.size()) >= n_ctx) {
    err =
        BadRequest(StrFormat("the prompt has %zu tokens but the context holds %d: it must be at "
                             "most %d tokens",
                             prompt.size(), n_ctx, n_ctx - 1));
    co_return co_await SendError(s, req, err, plain);
  }

  SchedRequestParams p;
  p.prompt = prompt;
  p.n_continued = n_continued;
  p.max_tokens = g.max_tokens < 0 ? n_ctx - static_cast<int>(prompt.size()) : g.max_tokens;
  p.sampler = g.sampler;
  if (!g.seed_given) p.sampler.seed = std::random_device{}() ^ (next_id_.load() << 32);
  p.stop = g.stop;
  if (std::optional<ApiError> bad = Constrain(g, in_reasoning, &p)) {
    err = std::move(*bad);
    co_return co_await SendError(s, req, err, plain);
  }
  if (o_.request_timeout_s > 0)
    p.deadline =
        Clock::now() + std::chrono::milliseconds(static_cast<int64_t>(o_.request_timeout_s * 1000));

  p.top_logprobs = g.top_logprobs;
  auto pipe = std::make_shared<Pipe>(co_await asio::this_coro::executor);
  Timer timer;
  SubmitResult sub = SubmitChoice(p, 0, pipe);
  if (sub.code == SubmitCode::kQueueFull) {
    metrics_.CountRejected();
    {
      err = MakeError(503, sub.message, "unavailable_error");
      co_return co_await SendError(s, req, err, plain);
    }
  }
  if (sub.code != SubmitCode::kOk) {
    err = sub.code == SubmitCode::kInvalid ? BadRequest(sub.message)
                                           : MakeError(503, sub.message, "unavailable_error");
    co_return co_await SendError(s, req, err, plain);
  }
  const int n_choices = ep == Endpoint::kInference ? 1 : g.n;
  if (n_choices > 1) {
    pipe->start_siblings = [this, p, n_choices, raw = pipe.get()] {
      auto self = raw->shared_from_this();
      for (int i = 1; i < n_choices; ++i) {
        SubmitResult r = SubmitChoice(p, i, self);
        if (r.code == SubmitCode::kOk) {
          raw->siblings.push_back(r.request);
          continue;
        }
        SchedUpdate u;  // the choice ends at once, as a failure of this node
        u.done = true;
        u.choice = i;
        u.finish_reason = r.code == SubmitCode::kStopped ? "cancelled" : "error";
        u.error = r.message;
        u.error_code = r.code == SubmitCode::kQueueFull ? "queue_full" : "internal_error";
        raw->Push(u);
      }
    };
  }
  pipe->request = sub.request;
  StartWatch(&s.socket(), pipe);
  const bool p_reasoning = ep == Endpoint::kChat && in_reasoning;

  const uint64_t n = next_id_.fetch_add(1);
  const std::string id =
      StrFormat(ep == Endpoint::kChat ? "chatcmpl-%llx%06llx" : "cmpl-%llx%06llx",
                static_cast<unsigned long long>(started_), static_cast<unsigned long long>(n));
  if (g.stream) co_return co_await Stream(s, req, buf, g, pipe, id, in_reasoning);

  struct ChoiceAcc {
    std::string text, continued_text;
    std::vector<int32_t> token_ids;
    std::vector<LogprobToken> logprobs;
    SchedUpdate last;
  };
  std::vector<ChoiceAcc> acc(static_cast<size_t>(n_choices));
  for (int n_done = 0; n_done < n_choices;) {
    auto ups = pipe->Take();
    if (ups.empty()) {
      co_await pipe->Wait();
      continue;
    }
    for (SchedUpdate& u : ups) {
      pipe->MaybeStartSiblings(u);
      ChoiceAcc& a = acc[static_cast<size_t>(u.choice)];
      a.continued_text += u.continued_text;
      if (u.token >= 0) a.token_ids.push_back(u.token);
      if (u.token >= 0 && g.top_logprobs >= 0)
        a.logprobs.push_back(LogprobOf(u, g.return_tokens_as_token_ids));
      a.text += u.text;
      if (u.done) {
        a.last = std::move(u);
        ++n_done;
      }
    }
  }
  co_await StopWatch(&s.socket(), pipe.get(), buf);
  if (pipe->disconnected) co_return false;
  for (const ChoiceAcc& a : acc) {
    if (a.last.finish_reason == "error" || a.last.finish_reason == "cancelled") {
      err = GenerationError(a.last);
      co_return co_await SendError(s, req, err, plain);
    }
  }
  Usage usage{acc[0].last.n_prompt, 0};
  for (const ChoiceAcc& a : acc) usage.completion_tokens += a.last.n_generated;
  if (p_reasoning) {
    usage.reasoning_tokens = 0;
    for (const ChoiceAcc& a : acc) usage.reasoning_tokens += a.last.n_thinking;
  }
  const int64_t created = static_cast<int64_t>(std::time(nullptr));
  // The response of one choice (its "choices" holds that choice only).
  auto one = [&](const ChoiceAcc& a) {
    const std::string finish = OpenAiFinish(a.last.finish_reason);
    const std::string& text = a.text;
    if (ep == Endpoint::kInference) {
      return json{{"response", text},
                  {"inference_time", timer.ElapsedMs() / 1000.0},
                  {"model", model_id_},
                  {"prompt_tokens", usage.prompt_tokens},
                  {"completion_tokens", usage.completion_tokens},
                  {"finish_reason", finish}};
    }
    if (ep == Endpoint::kCompletions) {
      const std::string echoed = g.echo ? PromptText(g) : std::string();
      json o = CompletionResponse(id, created, model_id_, echoed + text, finish, usage);
      if (g.top_logprobs >= 0)
        o["choices"][0]["logprobs"] = CompletionLogprobs(a.logprobs, echoed.size());
      return o;
    }
    std::string reasoning, content, c0;
    if (o_.reasoning_format == "deepseek") {
      ReasoningSplitter split(in_reasoning);
      if (!a.continued_text.empty()) {  // shown before: only the splitter's state matters
        std::string r0;
        split.Push(a.continued_text, &r0, &c0);
      }
      split.Push(text, &reasoning, &content);
      split.Flush(&reasoning, &content);
    } else {
      c0 = a.continued_text;
      content = text;
    }
    std::vector<ToolCall> calls;
    if (ParsesTools(g)) {
      // Continued text was shown before, except markup held back: its calls still count.
      ToolCallParser parser(template_.family);
      std::string shown, answer;
      parser.Push(c0, &shown, &calls);
      parser.Push(content, &answer, &calls);
      parser.Flush(&answer, &calls);
      AdoptCalls(g, 0, &calls);
      content = std::move(answer);
    }
    json o = ChatResponse(id, created, model_id_, reasoning, content,
                          calls.empty() ? finish : "tool_calls", usage);
    if (!calls.empty()) {
      json& msg = o["choices"][0]["message"];
      msg["tool_calls"] = ToolCallsJson(calls);
      if (content.empty()) msg["content"] = nullptr;
    }
    if (g.top_logprobs >= 0) o["choices"][0]["logprobs"] = ChatLogprobs(a.logprobs);
    return o;
  };
  json out = one(acc[0]);
  if (ep != Endpoint::kInference) {
    json choices = json::array();
    for (size_t i = 0; i < acc.size(); ++i) {
      json c = i == 0 ? out["choices"][0] : one(acc[i])["choices"][0];
      c["index"] = i;
      if (g.return_token_ids) c["token_ids"] = acc[i].token_ids;
      choices.push_back(std::move(c));
    }
    out["choices"] = std::move(choices);
    // The prompt's ids (as vLLM's return_token_ids): the rendered chat prompt, checkable.
    if (g.return_token_ids)
      out["prompt_token_ids"] = std::vector<int32_t>(prompt.begin(), prompt.end() - n_continued);
  }
  std::vector<std::pair<std::string, std::string>> headers;
  if (n_continued > 0) headers.emplace_back("X-Strata-Continued", std::to_string(n_continued));
  co_return co_await Send(s, req.version(), req.keep_alive(), 200, Dump(out), "application/json",
                          headers);
}

Task<bool> Server::Stream(ClientStream& s, const Request& req, beast::flat_buffer* buf,
                          const GenRequest& g, std::shared_ptr<Pipe> pipe, const std::string& id,
                          bool in_reasoning) {
  const bool chat = g.endpoint == Endpoint::kChat;
  const bool split = chat && o_.reasoning_format == "deepseek";
  const int64_t created = static_cast<int64_t>(std::time(nullptr));
  const bool usage_null = g.include_usage;
  const bool tools = ParsesTools(g);  // tool calls: each sent whole in one delta when complete
  const bool with_ids = g.return_token_ids;
  const bool with_lp = g.top_logprobs >= 0;

  http::response<http::empty_body> res{http::status::ok, req.version()};
  res.set(http::field::server, "strata");
  res.set(http::field::content_type, "text/event-stream");
  res.set(http::field::cache_control, "no-cache");
  if (!g.continue_ids.empty()) res.set("X-Strata-Continued", std::to_string(g.continue_ids.size()));
  res.keep_alive(req.keep_alive());
  res.chunked(true);
  http::response_serializer<http::empty_body> sr{res};
  bool broken = !co_await s.WriteHeader(sr);

  // The state of each choice (n > 1: events carry the choice's index).
  struct Choice {
    int index;
    ReasoningSplitter splitter;
    ToolCallParser parser;
    std::vector<ToolCall> new_calls;
    size_t n_calls = 0;
    // With return_token_ids, the ids sampled since the last event that carried text: they go
    // with the next one (and the rest with the finish chunk). Each update then makes at most
    // one event (reasoning and content in one delta, the last text in the finish chunk), so a
    // stream cut between events never splits a token's text from its id.
    std::vector<int32_t> ids;
    std::vector<LogprobToken> logprobs;  // not sent yet: go with the next event
    size_t text_offset = 0;              // completions' logprobs
  };
  std::vector<Choice> choices;
  choices.reserve(static_cast<size_t>(g.n));
  for (int i = 0; i < g.n; ++i)
    choices.push_back(Choice{.index = i,
                             .splitter = ReasoningSplitter(in_reasoning),
                             .parser = ToolCallParser(template_.family),
                             .new_calls = {},
                             .n_calls = 0,
                             .ids = {},
                             .logprobs = {},
                             .text_offset = 0});
  Choice* c = &choices[0];

  std::string out;
  auto decorate = [&](json chunk) {
    json& ch = chunk["choices"][0];
    ch["index"] = c->index;
    if (with_ids) {
      ch["token_ids"] = c->ids;
      c->ids.clear();
    }
    if (with_lp && !c->logprobs.empty()) {
      ch["logprobs"] =
          chat ? ChatLogprobs(c->logprobs) : CompletionLogprobs(c->logprobs, c->text_offset);
      for (const LogprobToken& t : c->logprobs) c->text_offset += t.piece.size();
      c->logprobs.clear();
    }
    return SseEvent(chunk);
  };
  // Text of one update for the client: the completion text, or chat's reasoning and content.
  auto split_text = [&](const std::string& text, bool final, std::string* reasoning,
                        std::string* content) {
    if (split) {
      c->splitter.Push(text, reasoning, content);
      if (final) c->splitter.Flush(reasoning, content);
    } else {
      *content = text;
    }
    if (!tools) return;
    std::string raw = std::move(*content);
    content->clear();
    c->parser.Push(raw, content, &c->new_calls);
    if (final) c->parser.Flush(content, &c->new_calls);
  };
  auto delta_of = [&](const std::string& reasoning, const std::string& content) {
    json d = json::object();
    if (!reasoning.empty()) d["reasoning_content"] = reasoning;
    if (!content.empty()) d["content"] = content;
    AdoptCalls(g, c->n_calls, &c->new_calls);
    if (!c->new_calls.empty()) d["tool_calls"] = ToolCallsJson(c->new_calls, c->n_calls, true);
    c->n_calls += c->new_calls.size();
    c->new_calls.clear();
    return d;
  };
  auto chunk = [&](json delta, const std::string& finish) {
    return decorate(ChatChunk(id, created, model_id_, std::move(delta), finish, usage_null));
  };
  auto emit_text = [&](const std::string& text, bool final) {
    if (!chat) {
      if (!text.empty())
        out += decorate(CompletionChunk(id, created, model_id_, text, "", usage_null));
      return;
    }
    std::string reasoning, content;
    split_text(text, final, &reasoning, &content);
    if (with_ids) {
      if (!reasoning.empty() || !content.empty() || !c->new_calls.empty())
        out += chunk(delta_of(reasoning, content), "");
      return;
    }
    if (!reasoning.empty()) out += chunk({{"reasoning_content", reasoning}}, "");
    if (!content.empty()) out += chunk({{"content", content}}, "");
    if (!c->new_calls.empty()) out += chunk(delta_of("", ""), "");
  };
  // The finish chunk, with the update's last text when token ids are reported.
  auto emit_finish = [&](const std::string& text, const std::string& reason) {
    if (!with_ids) {
      emit_text(text, true);
      const std::string finish = c->n_calls > 0 ? "tool_calls" : reason;
      out += chat ? chunk(json::object(), finish)
                  : decorate(CompletionChunk(id, created, model_id_, "", finish, usage_null));
      return;
    }
    if (!chat) {
      out += decorate(CompletionChunk(id, created, model_id_, text, reason, usage_null));
      return;
    }
    std::string reasoning, content;
    split_text(text, true, &reasoning, &content);
    json delta = delta_of(reasoning, content);
    out += chunk(std::move(delta), c->n_calls > 0 ? "tool_calls" : reason);
  };
  if (chat) {
    for (Choice& ch : choices) {
      c = &ch;
      out += chunk({{"role", "assistant"}, {"content", ""}}, "");
    }
  }

  int n_done = 0;
  Usage usage;
  bool failed = false;
  while (!broken && n_done < g.n && !failed) {
    auto ups = pipe->Take();
    if (ups.empty() && out.empty()) {
      co_await pipe->Wait();
      continue;
    }
    for (SchedUpdate& u : ups) {
      if (failed) break;
      pipe->MaybeStartSiblings(u);
      c = &choices[static_cast<size_t>(u.choice)];
      if (!u.continued_text.empty() && (split || tools)) {  // shown before: parsers' state
        std::string r0, c0 = split ? std::string() : u.continued_text;
        if (split) c->splitter.Push(u.continued_text, &r0, &c0);
        std::string shown;
        if (tools) c->parser.Push(c0, &shown, &c->new_calls);  // held markup was never shown
        if (!c->new_calls.empty()) out += chunk(delta_of("", ""), "");
      }
      if (with_ids && u.token >= 0) c->ids.push_back(u.token);
      if (with_lp && u.token >= 0)
        c->logprobs.push_back(LogprobOf(u, g.return_tokens_as_token_ids));
      failed = u.done && (u.finish_reason == "error" || u.finish_reason == "cancelled");
      if (!u.done || failed) emit_text(u.text, u.done);
      if (!u.done) continue;
      ++n_done;
      if (failed) {
        out += SseEvent(json::parse(ErrorJson(GenerationError(u))));
        out += kSseDone;
        break;
      }
      emit_finish(u.text, OpenAiFinish(u.finish_reason));
      usage.prompt_tokens = u.n_prompt;
      usage.completion_tokens += u.n_generated;
      if (chat && in_reasoning)
        usage.reasoning_tokens = std::max(usage.reasoning_tokens, 0) + u.n_thinking;
      if (n_done < g.n) continue;
      if (g.include_usage) out += SseEvent(UsageChunk(id, created, model_id_, chat, usage));
      out += kSseDone;
    }
    if (out.empty()) continue;
    if (!co_await s.WriteChunk(out)) broken = true;
    out.clear();
  }
  if (!broken && !co_await s.WriteLastChunk()) broken = true;
  if (broken || failed) pipe->CancelAll();
  co_await StopWatch(&s.socket(), pipe.get(), buf);
  metrics_.CountHttp(200);
  co_return !broken && !pipe->disconnected && req.keep_alive();
}

}  // namespace strata::node
