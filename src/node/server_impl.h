// Internals of the node server shared by server.cc (transport: accept, read, write, SSE)
// and handlers.cc (endpoints). Not a public interface.
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include "base/thread_pool.h"
#include "http/resources.h"
#include "http/server.h"
#include "node/api.h"
#include "node/metrics.h"
#include "node/server.h"
#include "pipeline/pipeline_head.h"
#include "pipeline/stage_server.h"
#include "runtime/engine.h"
#include "runtime/scheduler.h"
#include "tokenizer/chat_template.h"

namespace strata::node {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using Clock = std::chrono::steady_clock;
using Request = http::request<http::string_body>;
template <typename T>
using Task = asio::awaitable<T>;

// Carries a request's updates from the scheduler thread to its connection's coroutine, and
// watches the socket for the client going away while the request runs.
struct Pipe : std::enable_shared_from_this<Pipe> {
  explicit Pipe(const asio::any_io_executor& ex)
      : executor(ex), timer(ex, Clock::time_point::max()) {}

  // Scheduler thread.
  void Push(const SchedUpdate& u);
  // Connection strand: everything queued so far.
  std::deque<SchedUpdate> Take();
  // Connection strand: suspends until Push or the watcher wakes it (may wake spuriously).
  Task<void> Wait();
  void Wake();

  asio::any_io_executor executor;
  asio::steady_timer timer;
  std::mutex mu;
  std::deque<SchedUpdate> updates;
  std::shared_ptr<SchedRequest> request;
  // n > 1: choices 1..n-1, submitted by start_siblings (connection strand) once choice 0
  // has prefilled the prompt, so that they copy its keys/values.
  std::vector<std::shared_ptr<SchedRequest>> siblings;
  std::function<void()> start_siblings;
  void CancelAll() {
    if (request) request->Cancel();
    for (auto& r : siblings) r->Cancel();
  }
  // Runs start_siblings once, when an update of choice 0 arrives.
  void MaybeStartSiblings(const SchedUpdate& u) {
    if (u.choice != 0 || !start_siblings) return;
    auto f = std::move(start_siblings);
    start_siblings = nullptr;
    f();
  }

  // Token timing for the metrics (scheduler thread only).
  Clock::time_point start = Clock::now(), last_token;
  bool seen_token = false;

  // Disconnect watcher (connection strand only).
  std::array<char, 4096> peek{};
  std::string pipelined;  // bytes of a next request that arrived meanwhile (bounded)
  bool watching = false;
  bool stopping = false;      // StopWatch asked: a read that completed anyway does not re-arm
  bool disconnected = false;  // gone, or sent more than the pipelining limit
};

using ClientStream = ::strata::http::Stream;

// An API error as a reply: the OpenAI envelope, or {"error": "..."} when plain (/inference);
// 401 adds WWW-Authenticate, 503 Retry-After.
::strata::http::Reply ErrorReply(const ApiError& e, bool plain);
// The X-Request-Id header the gateway set (at most 128 bytes), or "".
std::string RequestIdOf(const Request& req);

// Reported in /health, /v1/models and the log when the model is a demo (strata.demo = true).
inline constexpr const char* kDemoWarning =
    "demo model: its weights are random, so its text is meaningless (serve a real model with "
    "--model)";

class Server : public ::strata::http::Handler {
 public:
  explicit Server(const NodeOptions& o);
  ~Server() override;
  Status Run();

  // ::strata::http::Handler (handlers.cc).
  std::optional<::strata::http::Reply> OnHeaders(const Request& req,
                                                 const ClientStream& s) override;
  Task<bool> OnRequest(ClientStream& s, Request& req) override;
  ::strata::http::Reply OnTransportError(int status, const std::string& message,
                                         const Request* req) override;

 private:
  // Transport (server.cc).
  // Sends one complete response; returns whether the connection stays open.
  Task<bool> Send(ClientStream& s, unsigned version, bool keep_alive, int status, std::string body,
                  const char* content_type = "application/json",
                  const std::vector<std::pair<std::string, std::string>>& headers = {});
  Task<bool> SendError(ClientStream& s, const Request& req, const ApiError& e, bool plain = false);
  void StartWatch(tcp::socket* socket, std::shared_ptr<Pipe> pipe);
  Task<void> StopWatch(tcp::socket* socket, Pipe* pipe, beast::flat_buffer* buf);

  // Endpoints (handlers.cc). Each returns whether the connection stays open.
  // The checks that need only the headers (route, method, key): an error or none.
  std::optional<ApiError> CheckHeaders(const Request& req) const;
  Task<bool> Handle(ClientStream& s, const Request& req, beast::flat_buffer* buf);
  Task<bool> Health(ClientStream& s, const Request& req);
  void HeadChain(nlohmann::json* j) const;  // the head's /health view of its pipeline
  Task<bool> Generate(ClientStream& s, const Request& req, beast::flat_buffer* buf, Endpoint ep);
  Task<bool> Stream(ClientStream& s, const Request& req, beast::flat_buffer* buf,
                    const GenRequest& g, std::shared_ptr<Pipe> pipe, const std::string& id,
                    bool in_reasoning);
  // Submits choice `choice` (seed + choice) whose updates go to `pipe` tagged with it.
  SubmitResult SubmitChoice(const SchedRequestParams& p, int choice,
                            const std::shared_ptr<Pipe>& pipe);
  LogprobToken LogprobOf(const SchedUpdate& u, bool as_ids) const;
  std::string PromptText(const GenRequest& g) const;  // completions' echo
  bool ModelMatches(const std::string& name) const;
  // Constraint and thinking budget of a request into *p (constrain.cc); an error (400) when
  // its grammar or schema is refused.
  std::optional<ApiError> Constrain(const GenRequest& g, bool in_reasoning, SchedRequestParams* p);
  Result<std::vector<int32_t>> ChatTokens(const GenRequest& g, bool* in_reasoning) const;
  nlohmann::json ChatTemplateJson() const;
  void Load();
  Status LoadPipeline();
  // The drafter and speculative options of the scheduler (NodeOptions::model_draft, ...).
  Status SetUpSpeculation(SchedulerOptions* so);
  void StartResources();  // host CPU / memory / disk sampling (server.cc)
  std::string PipelineMetrics() const;
  bool pipeline() const { return o_.first_layer >= 0; }
  bool is_stage() const { return pipeline() && o_.first_layer > 0; }
  bool ready() const { return state_.load(std::memory_order_acquire) == kReady; }

  enum State { kLoading = 0, kReady = 1, kFailed = 2 };

  NodeOptions o_;
  asio::io_context ioc_;
  std::unique_ptr<::strata::http::Server> http_;                // before ioc_ in destruction
  std::unique_ptr<::strata::http::ResourceMonitor> resources_;  // likewise (its timer)
  std::atomic<int> state_{kLoading};
  std::string load_error_;
  std::unique_ptr<Engine> engine_;          // single node
  std::unique_ptr<Model> range_model_;      // pipeline: this node's layer range
  std::unique_ptr<Tokenizer> range_tok_;    // pipeline head
  std::unique_ptr<ThreadPool> draft_pool_;  // pipeline head: the draft model's threads
  const Model* model_ = nullptr;            // whichever of the above
  const Tokenizer* tok_ = nullptr;
  ::strata::pipeline::PipelineHead* head_ = nullptr;        // owned by sched_ (pipeline head)
  std::unique_ptr<::strata::pipeline::StageServer> stage_;  // pipeline stage after the head
  std::unique_ptr<Scheduler> sched_;
  std::mutex grammars_mu_;
  std::unique_ptr<grammar::GrammarCache> grammars_;  // made on the first constrained request
  bool has_template_ = false;
  ChatTemplateInfo template_;
  ChatTemplateChoice chat_;  // what /v1/models and /health report as chat_template
  std::string model_id_, model_name_;
  // The model is a demo (metadata strata.demo = true): random weights, meaningless text.
  bool demo_ = false;
  int n_layers_ = 0;
  Metrics metrics_;
  std::atomic<uint64_t> next_id_{1};
  int64_t started_ = 0;  // unix seconds
  std::thread loader_;
};

}  // namespace strata::node
