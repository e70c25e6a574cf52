// Transport of the node over the HTTP core (src/http): responses, disconnect watching with
// bounded pipelining, model loading and process lifetime.
#include <csignal>
#include <cstdio>
#include <ctime>
#include <filesystem>

#include "base/log.h"
#include "node/server_impl.h"

namespace strata::node {

// ---- Pipe ----

void Pipe::Push(const SchedUpdate& u) {
  {
    std::lock_guard<std::mutex> lock(mu);
    updates.push_back(u);
  }
  Wake();
}

void Pipe::Wake() {
  asio::post(executor, [self = shared_from_this()] { self->timer.cancel(); });
}

std::deque<SchedUpdate> Pipe::Take() {
  std::lock_guard<std::mutex> lock(mu);
  std::deque<SchedUpdate> out;
  out.swap(updates);
  return out;
}

Task<void> Pipe::Wait() {
  // No suspension between a caller's Take() and this wait, and wakes run on the same strand:
  // a Push after Take() always cancels this wait.
  timer.expires_at(Clock::time_point::max());
  beast::error_code ec;
  co_await timer.async_wait(asio::redirect_error(asio::use_awaitable, ec));
}

// ---- Server ----

Server::Server(const NodeOptions& o) : o_(o) {
  started_ = static_cast<int64_t>(std::time(nullptr));
  model_id_ =
      o_.alias.empty() ? std::filesystem::path(o_.model_path).filename().string() : o_.alias;
}

Server::~Server() {
  if (loader_.joinable()) loader_.join();
  if (head_) head_->Interrupt();  // no waiting for a failed stage while stopping
  if (sched_) sched_->Stop();
  if (stage_) stage_->Stop();
}

void Server::Load() {
  Status st;
  if (pipeline()) {
    st = LoadPipeline();
  } else {
    auto e = Engine::Load({.model_path = o_.model_path,
                           .n_ctx = o_.ctx,
                           .n_seq = o_.parallel,
                           .threads = o_.threads,
                           .n_batch = o_.n_batch,
                           // checked by RunNode
                           .cache_type_k = ParseKvType(o_.cache_type_k).value(),
                           .cache_type_v = ParseKvType(o_.cache_type_v).value(),
                           .mmap = o_.mmap,
                           .load_progress = true});
    if (e.ok()) {
      engine_ = std::move(e).value();
      model_ = &engine_->model();
      tok_ = &engine_->tokenizer();
      n_layers_ = model_->config().n_layers;
    } else {
      st = e.status();
    }
  }
  if (!st.ok()) {
    load_error_ = st.message();
    state_.store(kFailed, std::memory_order_release);
    ioc_.stop();
    return;
  }
  model_name_ = model_->config().name;
  model_->PageIn(true);  // read the weights now (with progress), not during the first request
  {
    auto demo = model_->file().GetBool("strata.demo");  // written by `strata model synth` (demo)
    demo_ = demo.ok() && demo.value();
    if (demo_) STRATA_LOG(LogLevel::kWarn, "%s", kDemoWarning);
  }
  if (tok_ != nullptr) {
    // One choice for every endpoint (and `strata run --chat`): the flag, the GGUF's
    // template, or DeepSeek-R1's as an announced fallback.
    auto tpl = model_->file().GetString("tokenizer.chat_template");
    auto choice =
        ChooseChatTemplate(tpl.ok() ? std::string(tpl.value()) : std::string(), o_.chat_template);
    if (!choice.ok()) {  // the flag was checked when parsed: only a defect lands here
      load_error_ = choice.status().message();
      state_.store(kFailed, std::memory_order_release);
      ioc_.stop();
      return;
    }
    chat_ = std::move(choice).value();
    template_ = chat_.info;
    has_template_ = true;
    if (chat_.fallback) {
      STRATA_LOG(LogLevel::kWarn,
                 "chat template: %s; using the fallback '%s' (choose one with "
                 "--chat-template)",
                 chat_.note.c_str(), chat_.name.c_str());
    } else {
      STRATA_LOG(LogLevel::kInfo, "chat template: %s (from %s)", chat_.name.c_str(),
                 chat_.source.c_str());
    }
    SchedulerOptions so;
    so.n_batch = o_.n_batch;
    so.max_queue = o_.max_queue;
    if (engine_) {
      if (Status sst = SetUpSpeculation(&so); !sst.ok()) {
        load_error_ = sst.message();
        state_.store(kFailed, std::memory_order_release);
        ioc_.stop();
        return;
      }
      sched_ = std::make_unique<Scheduler>(engine_.get(), so);
    } else {
      ::strata::pipeline::PipelineHeadOptions ho;
      ho.next_host = o_.next_host;
      ho.next_port = static_cast<uint16_t>(o_.next_port);
      ho.link.client.secret = o_.cluster_secret;
      ho.activations = o_.activations == "q8" ? ::strata::net::Activations::kQ8
                                              : ::strata::net::Activations::kF32;
      ho.n_seq = o_.parallel;
      ho.n_ctx = o_.ctx;
      ho.cache_type_k = ParseKvType(o_.cache_type_k).value();
      ho.cache_type_v = ParseKvType(o_.cache_type_v).value();
      ho.threads =
          o_.threads > 0 ? o_.threads : static_cast<int>(std::thread::hardware_concurrency());
      ho.depth = o_.micro_batches;
      ho.grace_ms = o_.stage_grace_ms;
      auto h = ::strata::pipeline::PipelineHead::Start(*model_, ho);
      if (!h.ok()) {
        load_error_ = h.status().message();
        state_.store(kFailed, std::memory_order_release);
        ioc_.stop();
        return;
      }
      head_ = h->get();
      if (Status sst = SetUpSpeculation(&so); !sst.ok()) {
        load_error_ = sst.message();
        state_.store(kFailed, std::memory_order_release);
        ioc_.stop();
        return;
      }
      sched_ = std::make_unique<Scheduler>(*tok_, std::move(h).value(), so);
    }
  }
  state_.store(kReady, std::memory_order_release);
  if (pipeline())
    LogEvent(LogLevel::kInfo,
             StrFormat("strata node: layers %d-%d of %s ready (%d slots x %d context)",
                       o_.first_layer, o_.last_layer, model_id_.c_str(), o_.parallel, o_.ctx),
             "");
  else
    LogEvent(LogLevel::kInfo,
             StrFormat("strata node: model %s loaded (%d slots x %d context)", model_id_.c_str(),
                       o_.parallel, o_.ctx),
             "");
}

Status Server::SetUpSpeculation(SchedulerOptions* so) {
  so->spec.draft_max = o_.draft_max;
  so->spec.draft_min = o_.draft_min;
  so->spec.p_min = o_.draft_p_min;
  so->spec.ngram_n = o_.spec_ngram_size_n;
  so->spec.max_seqs = o_.spec_max_seqs;
  if (!o_.model_draft.empty()) {
    auto m = Model::Load(o_.model_draft, {.mmap = o_.mmap});
    if (!m.ok()) return m.status().With("loading the draft model '" + o_.model_draft + "'");
    if (m.value()->config().n_vocab != model_->config().n_vocab)
      return Errorf(
          "the draft model '%s' has %lld tokens in its vocabulary, the model %lld: a draft "
          "must share the model's tokenizer",
          o_.model_draft.c_str(), static_cast<long long>(m.value()->config().n_vocab),
          static_cast<long long>(model_->config().n_vocab));
    m.value()->PageIn(false);
    // A pipeline head drafts on threads of its own: its layers run meanwhile on the head's.
    ThreadPool* pool = nullptr;
    if (engine_) {
      pool = &engine_->pool();
    } else {
      draft_pool_ = std::make_unique<ThreadPool>(o_.threads);  // 0: every core, as ThreadPool
      pool = draft_pool_.get();
    }
    STRATA_ASSIGN_OR_RETURN(
        auto d, ModelDrafter::Create(std::move(m).value(), o_.parallel, o_.ctx, o_.n_batch,
                                     o_.draft_p_min, pool, o_.draft_vocab));
    so->drafter = std::move(d);
    LogEvent(LogLevel::kInfo,
             StrFormat("speculative decoding: draft model %s, up to %d tokens per step",
                       o_.model_draft.c_str(), o_.draft_max),
             "");
  } else if (o_.spec_type == "ngram-simple") {
    so->drafter = std::make_shared<NgramDrafter>(o_.spec_ngram_size_n);
    LogEvent(LogLevel::kInfo,
             StrFormat("speculative decoding: n-gram lookup (n <= %d), up to %d tokens per step",
                       o_.spec_ngram_size_n, o_.draft_max),
             "");
  }
  return Status::Ok();
}

Status Server::LoadPipeline() {
  if (o_.cluster_secret.empty())
    return Status::Error(
        "pipeline mode needs a cluster secret (--cluster-secret or STRATA_CLUSTER_SECRET)");
  STRATA_ASSIGN_OR_RETURN(auto m, Model::Load(o_.model_path, {.first = o_.first_layer,
                                                              .last = o_.last_layer + 1,
                                                              .mmap = o_.mmap,
                                                              .progress = true}));
  const int n_layers = m->config().n_layers;
  n_layers_ = o_.last_layer - o_.first_layer + 1;
  if (o_.first_layer == 0) {
    if (o_.next_port == 0)
      return Errorf("the head stage (layers 0-%d of %d) needs --next HOST:PORT", o_.last_layer,
                    n_layers);
    auto tok = Tokenizer::FromGguf(m->file());
    if (!tok.ok()) return tok.status().With("loading the tokenizer of '" + o_.model_path + "'");
    range_tok_ = std::move(tok).value();
    range_model_ = std::move(m);
    model_ = range_model_.get();
    tok_ = range_tok_.get();
    return Status::Ok();
  }
  if (o_.stage_port <= 0)
    return Status::Error("a pipeline stage after the head needs --stage-port");
  if (o_.last_layer + 1 < n_layers && o_.next_port == 0)
    return Errorf("stage %d-%d does not hold the last layer (%d): it needs --next HOST:PORT",
                  o_.first_layer, o_.last_layer, n_layers - 1);
  ::strata::pipeline::StageServerOptions so;
  so.host = o_.host;
  so.port = static_cast<uint16_t>(o_.stage_port);
  so.secret = o_.cluster_secret;
  so.n_seq = o_.parallel;
  so.n_ctx = o_.ctx;
  so.cache_type_k = ParseKvType(o_.cache_type_k).value();
  so.cache_type_v = ParseKvType(o_.cache_type_v).value();
  so.threads = o_.threads > 0 ? o_.threads : static_cast<int>(std::thread::hardware_concurrency());
  if (o_.last_layer + 1 < n_layers) {
    so.next_host = o_.next_host;
    so.next_port = static_cast<uint16_t>(o_.next_port);
  }
  const Model* raw = m.get();
  STRATA_ASSIGN_OR_RETURN(stage_, ::strata::pipeline::StageServer::Start(std::move(m), so));
  model_ = raw;  // owned by the stage server
  LogEvent(LogLevel::kInfo,
           StrFormat("strata node: stage layers %d-%d listening for its upstream on %s:%u",
                     o_.first_layer, o_.last_layer, o_.host.c_str(), stage_->port()),
           "");
  return Status::Ok();
}

Status Server::Run() {
  ::strata::http::RaiseFileLimit();  // many concurrent connections need descriptors
  auto ms = [](double s) { return std::chrono::milliseconds(static_cast<int64_t>(s * 1000)); };
  ::strata::http::ServerOptions so;
  so.name = "strata node";
  so.host = o_.host;
  so.port = o_.port;
  so.limits.body_bytes = o_.body_limit;
  so.limits.drain_bytes = 256u << 20;
  so.limits.idle = ms(o_.idle_timeout_s);
  so.limits.request_read = ms(o_.request_read_timeout_s);
  so.limits.max_connections = o_.max_connections;
  so.limits.max_connections_per_client = o_.max_connections_per_client;
  http_ = std::make_unique<::strata::http::Server>(ioc_, *this, so);
  if (Status st = http_->Listen(); !st.ok()) return st;
  LogEvent(LogLevel::kInfo,
           StrFormat("strata node: listening on http://%s:%u (loading %s)", o_.host.c_str(),
                     http_->port(), o_.model_path.c_str()),
           "");
  http_->StopOnSignals(std::chrono::seconds(10));
  http_->Start();
  StartResources();
  loader_ = std::thread([this] { Load(); });
  ::strata::http::RunThreads(ioc_, o_.http_threads);
  if (loader_.joinable()) loader_.join();
  // Finish the requests still running (their callbacks post to the stopped loop, harmlessly).
  if (head_) head_->Interrupt();  // no waiting for a failed stage while stopping
  if (sched_) sched_->Stop();
  if (stage_) stage_->Stop();
  if (state_.load() == kFailed) return Status::Error(load_error_).With("loading the model");
  LogEvent(LogLevel::kInfo, "strata node: stopped", "");
  return Status::Ok();
}

void Server::StartResources() {
  ::strata::http::ResourceMonitor::Options ro;
  ro.component = "node";
  ro.disk_path = o_.disk_path;
  if (ro.disk_path.empty()) {
    const std::filesystem::path dir = std::filesystem::path(o_.model_path).parent_path();
    ro.disk_path = dir.empty() ? "." : dir.string();
  }
  ro.thresholds = {o_.warn_cpu_percent, o_.warn_memory_percent, o_.warn_disk_percent};
  ro.interval = std::chrono::milliseconds(o_.resource_interval_ms);
  resources_ = std::make_unique<::strata::http::ResourceMonitor>(std::move(ro));
  resources_->Start(ioc_.get_executor());
}

Task<bool> Server::Send(ClientStream& s, unsigned version, bool keep_alive, int status,
                        std::string body, const char* content_type,
                        const std::vector<std::pair<std::string, std::string>>& headers) {
  http::response<http::string_body> res{static_cast<http::status>(status), version};
  res.set(http::field::server, "strata");
  res.set(http::field::content_type, content_type);
  for (const auto& [k, v] : headers) res.set(k, v);
  res.keep_alive(keep_alive);
  res.body() = std::move(body);
  res.prepare_payload();
  const bool ok = co_await s.Write(res);
  metrics_.CountHttp(status);
  co_return ok&& keep_alive;
}

::strata::http::Reply ErrorReply(const ApiError& e, bool plain) {
  ::strata::http::Reply r;
  r.status = e.status;
  if (e.status == 503) r.headers.emplace_back("Retry-After", "1");
  if (e.status == 401) r.headers.emplace_back("WWW-Authenticate", "Bearer");
  r.body = plain ? Dump(nlohmann::json{{"error", e.message}}) : ErrorJson(e);
  return r;
}

std::string RequestIdOf(const Request& req) {
  const auto it = req.find("X-Request-Id");
  if (it == req.end()) return "";
  return std::string(it->value().substr(0, 128));
}

Task<bool> Server::SendError(ClientStream& s, const Request& req, const ApiError& e, bool plain) {
  ::strata::http::Reply r = ErrorReply(e, plain);
  STRATA_LOG_REQ(e.status >= 500 ? LogLevel::kWarn : LogLevel::kInfo, RequestIdOf(req), "%s: %d %s",
                 std::string(req.target()).c_str(), e.status, e.message.c_str());
  co_return co_await Send(s, req.version(), req.keep_alive() && e.status < 500, e.status,
                          std::move(r.body), "application/json", r.headers);
}

void Server::StartWatch(tcp::socket* socket, std::shared_ptr<Pipe> pipe) {
  pipe->watching = true;
  Pipe* p = pipe.get();
  socket->async_read_some(
      asio::buffer(p->peek),
      [this, socket, pipe = std::move(pipe)](const beast::error_code& ec, size_t n) mutable {
        if (!ec && pipe->pipelined.size() + n <= o_.pipelined_limit) {
          // A pipelined next request: keep its bytes, and keep watching unless StopWatch has
          // asked to stop. Its cancel() cannot recall a read that had already completed: that
          // read lands here with data, and re-arming it would wait for bytes that never come.
          pipe->pipelined.append(pipe->peek.data(), n);
          if (!pipe->stopping) {
            StartWatch(socket, std::move(pipe));
            return;
          }
          pipe->watching = false;
          pipe->timer.cancel();
          return;
        }
        // Gone, or sending more than the pipelining limit while the request runs: cancel
        // it and close the connection.
        pipe->watching = false;
        if (ec != asio::error::operation_aborted) {
          if (!ec) {  // over the limit: nothing more goes out on this connection
            pipe->pipelined.clear();
            beast::error_code ignore;
            socket->shutdown(tcp::socket::shutdown_both, ignore);
          }
          pipe->disconnected = true;
          pipe->CancelAll();
        }
        pipe->timer.cancel();
      });
}

Task<void> Server::StopWatch(tcp::socket* socket, Pipe* pipe, beast::flat_buffer* buf) {
  pipe->stopping = true;
  if (pipe->watching) {
    beast::error_code ec;
    socket->cancel(ec);
    while (pipe->watching) co_await pipe->Wait();
  }
  if (!pipe->pipelined.empty()) {
    auto mb = buf->prepare(pipe->pipelined.size());
    asio::buffer_copy(mb, asio::buffer(pipe->pipelined));
    buf->commit(pipe->pipelined.size());
    pipe->pipelined.clear();
  }
}

Status RunNode(const NodeOptions& opts) {
  if (opts.parallel < 1) return Errorf("--parallel must be at least 1 (got %d)", opts.parallel);
  if (opts.ctx < 8) return Errorf("--ctx must be at least 8 (got %d)", opts.ctx);
  if (opts.first_layer >= 0 && (opts.last_layer < opts.first_layer))
    return Errorf("--layers %d-%d is not a range", opts.first_layer, opts.last_layer);
  for (const std::string* t : {&opts.cache_type_k, &opts.cache_type_v})
    if (auto kt = ParseKvType(*t); !kt.ok()) return kt.status().With("--cache-type-k / -v");
  if (opts.activations != "f32" && opts.activations != "q8")
    return Errorf("--activations must be f32 or q8 (got '%s')", opts.activations.c_str());
  if (opts.reasoning_format != "deepseek" && opts.reasoning_format != "none")
    return Errorf("--reasoning-format must be deepseek or none (got '%s')",
                  opts.reasoning_format.c_str());
  if (opts.spec_type != "none" && opts.spec_type != "ngram-simple")
    return Errorf("--spec-type must be none or ngram-simple (got '%s')", opts.spec_type.c_str());
  if (opts.first_layer > 0 && (!opts.model_draft.empty() || opts.spec_type != "none"))
    return Status::Error(
        "speculative decoding (--model-draft, --spec-type) is set on the pipeline's head (the "
        "stage with layer 0, which drafts), not on a later stage");
  if (opts.draft_max < 0 || opts.draft_min < 0 || opts.draft_p_min < 0 || opts.draft_p_min > 1 ||
      opts.spec_ngram_size_n < 1 || opts.draft_vocab < 0)
    return Status::Error(
        "--draft-max, --draft-min and --draft-vocab must be >= 0, --draft-p-min in [0, 1], "
        "--spec-ngram-size-n >= 1");
  Server server(opts);
  return server.Run();
}

}  // namespace strata::node
