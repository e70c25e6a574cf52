// A pipeline stage: a StageServer owns one layer range [A, B) of a model with its KV cache and
// forward pass, accepts authenticated upstream stages (net/handshake.h) and runs their Forward
// requests in arrival order on one compute thread; when its range does not end with the output
// head it relays its hidden states to the next stage (a net::StageLink) without waiting for the
// answer, so it can compute the next micro-batch while later stages work on this one; the
// answer is passed back upstream when it arrives. The last stage applies the head and samples
// (kSample) or returns greedy ids / logits.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <list>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "base/status.h"
#include "base/thread_pool.h"
#include "model/forward.h"
#include "model/kv_cache.h"
#include "model/weights.h"
#include "net/handshake.h"
#include "net/protocol.h"
#include "net/transport.h"
#include "runtime/step.h"

namespace strata::net {
class StageLink;
struct LinkStats;
}  // namespace strata::net

namespace strata::pipeline {

using net::ClearSeqMsg;
using net::Connection;
using net::ErrorCode;
using net::ForwardMsg;
using net::FrameType;
using net::Listener;
using net::StageClientOptions;
using net::StageInfo;

struct StageServerOptions {
  std::string host = "127.0.0.1";
  uint16_t port = 0;                // 0: any free port
  std::string secret;               // shared cluster secret (required)
  int n_seq = 4;                    // KV slots
  int n_ctx = 512;                  // positions per slot
  int threads = 1;                  // compute threads
  DType cache_type_k = DType::F16;  // KV cache types (KvCache: F16, Q8_0, Q4_0)
  DType cache_type_v = DType::F16;
  size_t max_frame_bytes = net::kDefaultMaxFrameBytes;
  int handshake_timeout_ms = 5000;  // the whole handshake of a new peer (one deadline)
  // Connections still in their handshake (unauthenticated) at once; a new connection beyond
  // it closes the oldest of them, so that idle peers cannot lock the real upstream out.
  int max_handshakes = 8;
  // Authenticated upstream connections at once; a new authenticated one beyond it closes the
  // oldest (an authenticated upstream is always accepted: the newest wins).
  int max_connections = 8;
  // The next stage, required unless the range ends with the output head. Start() waits up to
  // next.connect_timeout_ms for it; an unreachable next stage is retried in the background
  // (requests fail with a clear error meanwhile), a refused handshake fails Start().
  std::string next_host;
  uint16_t next_port = 0;
  StageClientOptions next;  // its secret defaults to `secret`
  int heartbeat_ms = 200;   // liveness pings to the next stage
  int dead_after_ms = 900;  // silence after which the next stage counts as cut off
};

struct StageStats {
  uint64_t accepted = 0;        // TCP connections accepted
  uint64_t authenticated = 0;   // completed handshakes
  uint64_t rejected = 0;        // connections closed for a handshake or protocol failure
  uint64_t requests = 0;        // Forward requests served (successfully)
  uint64_t request_errors = 0;  // Forward requests answered with an Error
  uint64_t stale_errors = 0;    // of which: positions this stage (or a later one) lost
  uint64_t tokens = 0;          // tokens run through this stage's layers
  double compute_seconds = 0;   // time in this stage's forward pass (and sampling)
  uint64_t bytes_upstream = 0;  // bytes written to upstream connections (results, errors)
};

class StageServer {
 public:
  // Binds, connects to the next stage (when there is one) and starts serving in the
  // background. The model must be a range of the file the other stages load.
  static Result<std::unique_ptr<StageServer>> Start(std::unique_ptr<Model> model,
                                                    const StageServerOptions& opts);
  ~StageServer();  // Stop()
  void Stop();

  uint16_t port() const { return listener_->port(); }
  const StageInfo& info() const { return info_; }
  StageStats stats() const;

  // Link to the next stage (false when this is the last stage).
  bool next_stats(net::LinkStats* out) const;

 private:
  struct Upstream;
  struct Job;
  StageServer() = default;
  void AcceptLoop();
  void Serve(const std::shared_ptr<Connection>& conn,
             const std::shared_ptr<std::atomic<bool>>& done);
  // Closes the oldest connection that is (or is not) authenticated. Under conns_mu_.
  void CloseOldest(bool authenticated);
  void ReapFinished();
  Status Handshake(Connection& conn, StageInfo* peer, ErrorCode* code);
  void Worker();
  void RunForward(const std::shared_ptr<Upstream>& up, ForwardMsg& msg);
  void RunClear(const std::shared_ptr<Upstream>& up, const ClearSeqMsg& msg);
  void Reply(const std::shared_ptr<Upstream>& up, FrameType type,
             const std::vector<uint8_t>& payload);
  void ReplyError(const std::shared_ptr<Upstream>& up, uint64_t id, ErrorCode code,
                  const std::string& message);
  void Reject(Connection& conn, ErrorCode code, const Status& why);

  StageServerOptions opts_;
  std::unique_ptr<Model> model_;
  StageInfo info_;
  std::unique_ptr<Listener> listener_;
  std::unique_ptr<ThreadPool> pool_;

  // Compute state: used by the worker thread only.
  std::unique_ptr<KvCache> cache_;
  std::unique_ptr<strata::Forward> forward_;
  std::unique_ptr<SlotSamplers> samplers_;
  std::vector<float> out_;
  std::unique_ptr<net::StageLink> next_;
  std::atomic<uint64_t> next_id_{1};

  std::mutex jobs_mu_;
  std::condition_variable jobs_cv_;
  std::deque<std::unique_ptr<Job>> jobs_;
  std::thread worker_;

  std::atomic<bool> stop_{false};
  std::thread acceptor_;
  mutable std::mutex conns_mu_;
  struct ConnEntry {
    std::shared_ptr<Connection> conn;
    std::thread thread;
    std::shared_ptr<std::atomic<bool>> done;
    bool authenticated = false;  // guarded by conns_mu_
    bool closing = false;        // closed by CloseOldest (guarded by conns_mu_)
  };
  std::list<ConnEntry> conns_;
  int live_ = 0;         // authenticated connections
  int handshaking_ = 0;  // connections in their handshake
  StageStats stats_;
};

}  // namespace strata::pipeline
