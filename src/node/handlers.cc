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
  if (name.empty() || name == model_id_ || name == o_.model_path) return true;
  if (!model_name_.empty() && name == model_name_) return true;
  const std::string stem = std::filesystem::path(o_.model_path).stem().string();
  return name == stem;
}

Result<std::vector<int32_t>> Server::ChatTokens(const std::vector<ChatMessage>& messages,
                                                bool* in_reasoning) const {
  const Tokenizer& tok = *tok_;
  const std::string bos = tok.bos() >= 0 ? tok.Text(tok.bos()) : std::string();
  STRATA_ASSIGN_OR_RETURN(ChatRender r, RenderChatWithSpans(template_, messages, true, bos));
  const std::string& text = r.text;
  // The templates write BOS themselves: add it only when the rendered text lacks it, so the
  // prompt has exactly one. Message contents are plain text unless configured otherwise.
  const bool has_bos = !bos.empty() && text.rfind(bos, 0) == 0;
  std::vector<int32_t> ids = o_.parse_special_in_content
                                 ? tok_->Encode(text, !has_bos, true)
                                 : tok_->EncodeWithPlainSpans(text, !has_bos, r.contents);
  if (tok.bos() >= 0 && ids.size() >= 2 && ids[0] == tok.bos() && ids[1] == tok.bos())
    ids.erase(ids.begin());
  size_t end = text.find_last_not_of(" \t\r\n");
  end = end == std::string::npos ? 0 : end + 1;
  *in_reasoning = end >= 7 && text.compare(end - 7, 7, "<think>") == 0;
  return ids;
}

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
  if (path != "/health" && !key.empty() &&
      !::strata::http::SecretEquals(BearerToken(req), key))
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
                    {"name", model_name_}}}};
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
    stages.push_back({{"layers", StrFormat("%d-", o_.last_layer + 1)},
                      {"addr", next_addr},
                      {"state", "down"}});
  }
  (*j)["stages"] = std::move(stages);
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

  bool in_reasoning = false;
  std::vector<int32_t> prompt;
  if (ep == Endpoint::kChat) {
    auto t = ChatTokens(g.messages, &in_reasoning);
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
  if (o_.request_timeout_s > 0)
    p.deadline =
        Clock::now() + std::chrono::milliseconds(static_cast<int64_t>(o_.request_timeout_s * 1000));

  auto pipe = std::make_shared<Pipe>(co_await net::this_coro::executor);
  Metrics* metrics = &metrics_;
  Timer timer;
  SubmitResult sub = sched_->Submit(std::move(p), [pipe, metrics](const SchedUpdate& u) {
    if (u.token >= 0) {
      const auto now = Clock::now();
      if (!pipe->seen_token)
        metrics->ObserveTtft(std::chrono::duration<double>(now - pipe->start).count());
      else
        metrics->ObserveInterToken(std::chrono::duration<double>(now - pipe->last_token).count());
      pipe->seen_token = true;
      pipe->last_token = now;
    }
    pipe->Push(u);
  });
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
  pipe->request = sub.request;
  StartWatch(&s.socket(), pipe);

  const uint64_t n = next_id_.fetch_add(1);
  const std::string id =
      StrFormat(ep == Endpoint::kChat ? "chatcmpl-%llx%06llx" : "cmpl-%llx%06llx",
                static_cast<unsigned long long>(started_), static_cast<unsigned long long>(n));
  if (g.stream) co_return co_await Stream(s, req, buf, g, pipe, id, in_reasoning);

  std::string text, continued_text;
  std::vector<int32_t> token_ids;
  SchedUpdate last;
  for (bool done = false; !done;) {
    auto ups = pipe->Take();
    if (ups.empty()) {
      co_await pipe->Wait();
      continue;
    }
    for (SchedUpdate& u : ups) {
      continued_text += u.continued_text;
      if (u.token >= 0) token_ids.push_back(u.token);
      text += u.text;
      if (u.done) {
        last = std::move(u);
        done = true;
      }
    }
  }
  co_await StopWatch(&s.socket(), pipe.get(), buf);
  if (pipe->disconnected) co_return false;
  if (last.finish_reason == "error" || last.finish_reason == "cancelled") {
    err = GenerationError(last);
    co_return co_await SendError(s, req, err, plain);
  }
  Usage usage{last.n_prompt, last.n_generated};
  const int64_t created = static_cast<int64_t>(std::time(nullptr));
  const std::string finish = OpenAiFinish(last.finish_reason);
  json out;
  if (ep == Endpoint::kInference) {
    out = {{"response", text},
           {"inference_time", timer.ElapsedMs() / 1000.0},
           {"model", model_id_},
           {"prompt_tokens", usage.prompt_tokens},
           {"completion_tokens", usage.completion_tokens},
           {"finish_reason", finish}};
  } else if (ep == Endpoint::kCompletions) {
    out = CompletionResponse(id, created, model_id_, text, finish, usage);
  } else {
    std::string reasoning, content;
    if (o_.reasoning_format == "deepseek") {
      ReasoningSplitter split(in_reasoning);
      if (!continued_text.empty()) {  // shown before: only the splitter's state matters
        std::string r0, c0;
        split.Push(continued_text, &r0, &c0);
      }
      split.Push(text, &reasoning, &content);
      split.Flush(&reasoning, &content);
    } else {
      content = text;
    }
    out = ChatResponse(id, created, model_id_, reasoning, content, finish, usage);
  }
  if (g.return_token_ids && ep != Endpoint::kInference) out["choices"][0]["token_ids"] = token_ids;
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
  ReasoningSplitter splitter(in_reasoning);

  http::response<http::empty_body> res{http::status::ok, req.version()};
  res.set(http::field::server, "strata");
  res.set(http::field::content_type, "text/event-stream");
  res.set(http::field::cache_control, "no-cache");
  if (!g.continue_ids.empty())
    res.set("X-Strata-Continued", std::to_string(g.continue_ids.size()));
  res.keep_alive(req.keep_alive());
  res.chunked(true);
  http::response_serializer<http::empty_body> sr{res};
  bool broken = !co_await s.WriteHeader(sr);

  std::string out;
  // With return_token_ids, the ids sampled since the last event that carried text: they go
  // with the next one (and the rest with the finish chunk). Each update then makes at most
  // one event (reasoning and content in one delta, the last text in the finish chunk), so a
  // stream cut between events never splits a token's text from its id.
  std::vector<int32_t> ids;
  const bool with_ids = g.return_token_ids;
  auto take_ids = [&](json chunk) {
    if (with_ids) {
      chunk["choices"][0]["token_ids"] = ids;
      ids.clear();
    }
    return chunk;
  };
  // Text of one update for the client: the completion text, or chat's reasoning and content.
  auto split_text = [&](const std::string& text, bool final, std::string* reasoning,
                        std::string* content) {
    if (split) {
      splitter.Push(text, reasoning, content);
      if (final) splitter.Flush(reasoning, content);
    } else {
      *content = text;
    }
  };
  auto delta_of = [](const std::string& reasoning, const std::string& content) {
    json d = json::object();
    if (!reasoning.empty()) d["reasoning_content"] = reasoning;
    if (!content.empty()) d["content"] = content;
    return d;
  };
  auto emit_text = [&](const std::string& text, bool final) {
    if (!chat) {
      if (!text.empty())
        out += SseEvent(take_ids(CompletionChunk(id, created, model_id_, text, "", usage_null)));
      return;
    }
    std::string reasoning, content;
    split_text(text, final, &reasoning, &content);
    if (with_ids) {
      if (!reasoning.empty() || !content.empty())
        out += SseEvent(take_ids(
            ChatChunk(id, created, model_id_, delta_of(reasoning, content), "", usage_null)));
      return;
    }
    if (!reasoning.empty())
      out += SseEvent(
          ChatChunk(id, created, model_id_, {{"reasoning_content", reasoning}}, "", usage_null));
    if (!content.empty())
      out += SseEvent(ChatChunk(id, created, model_id_, {{"content", content}}, "", usage_null));
  };
  // The finish chunk, with the update's last text when token ids are reported.
  auto emit_finish = [&](const std::string& text, const std::string& finish) {
    if (!with_ids) {
      emit_text(text, true);
      out += SseEvent(chat ? ChatChunk(id, created, model_id_, json::object(), finish, usage_null)
                           : CompletionChunk(id, created, model_id_, "", finish, usage_null));
      return;
    }
    if (!chat) {
      out += SseEvent(take_ids(CompletionChunk(id, created, model_id_, text, finish, usage_null)));
      return;
    }
    std::string reasoning, content;
    split_text(text, true, &reasoning, &content);
    out += SseEvent(take_ids(
        ChatChunk(id, created, model_id_, delta_of(reasoning, content), finish, usage_null)));
  };
  if (chat)
    out += SseEvent(ChatChunk(id, created, model_id_, {{"role", "assistant"}, {"content", ""}}, "",
                              usage_null));

  bool done = false;
  while (!broken && !done) {
    auto ups = pipe->Take();
    if (ups.empty() && out.empty()) {
      co_await pipe->Wait();
      continue;
    }
    for (SchedUpdate& u : ups) {
      if (!u.continued_text.empty() && split) {  // shown before: only the splitter's state
        std::string r0, c0;
        splitter.Push(u.continued_text, &r0, &c0);
      }
      if (with_ids && u.token >= 0) ids.push_back(u.token);
      const bool failed = u.done && (u.finish_reason == "error" || u.finish_reason == "cancelled");
      if (!u.done || failed) emit_text(u.text, u.done);
      if (!u.done) continue;
      done = true;
      if (failed) {
        out += SseEvent(json::parse(ErrorJson(GenerationError(u))));
      } else {
        emit_finish(u.text, OpenAiFinish(u.finish_reason));
        if (g.include_usage)
          out += SseEvent(UsageChunk(id, created, model_id_, chat, {u.n_prompt, u.n_generated}));
      }
      out += kSseDone;
    }
    if (out.empty()) continue;
    if (!co_await s.WriteChunk(out)) broken = true;
    out.clear();
  }
  if (!broken && !co_await s.WriteLastChunk()) broken = true;
  if (broken && pipe->request) pipe->request->Cancel();
  co_await StopWatch(&s.socket(), pipe.get(), buf);
  metrics_.CountHttp(200);
  co_return !broken && !pipe->disconnected && req.keep_alive();
}

}  // namespace strata::node
