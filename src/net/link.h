// StageLink: the upstream side of one pipeline hop, built for pipelining and failures. Many
// requests may be outstanding on the connection (replies are matched by request id); a reader
// thread delivers each reply to its callback. The link pings the stage while connected and
// declares it dead when nothing arrives for `dead_after_ms`, or at once when the socket
// closes: every outstanding request then fails with a clear error, and a background thread
// reconnects with exponential backoff, so the pipeline serves again when the stage is back.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "base/status.h"
#include "net/handshake.h"
#include "net/protocol.h"
#include "net/transport.h"

namespace strata::net {

struct LinkOptions {
  StageClientOptions client;  // secret, frame limit, connect and handshake timeouts
  int heartbeat_ms = 200;     // Ping interval while connected
  int dead_after_ms = 900;    // no frame from the stage for this long: cut off
  int backoff_min_ms = 50;    // reconnect delay, doubling up to backoff_max_ms
  int backoff_max_ms = 1000;
};

// A reply: status OK with the Result, or the error (code kDownstream when the link failed).
struct LinkReply {
  Status status;
  ErrorCode code = ErrorCode::kDownstream;
  ResultMsg result;
};

struct LinkStats {
  bool connected = false;
  uint64_t connects = 0;    // successful handshakes (1 + reconnects)
  uint64_t failures = 0;    // connections lost
  uint64_t bytes_sent = 0;  // over every connection
  uint64_t bytes_received = 0;
  uint64_t requests = 0;       // replies received
  double request_seconds = 0;  // sum of send -> reply times
  // The hop's own cost on this side: encoding and writing Forward frames, and their tokens.
  double forward_send_seconds = 0;
  uint64_t forward_tokens = 0;
  double last_rtt_seconds = 0;  // last Ping -> Pong round trip (the hop's network latency)
  double rtt_seconds_sum = 0;
  uint64_t rtt_count = 0;
  std::string last_error;
};

class StageLink {
 public:
  using Callback = std::function<void(LinkReply)>;

  // Starts connecting to host:port in the background as the stage `self`.
  StageLink(std::string host, uint16_t port, StageInfo self, LinkOptions opts);
  ~StageLink();  // Stop()
  void Stop();

  // Waits until connected or the first attempt failed; returns the first attempt's status.
  Status WaitFirstAttempt(int timeout_ms);
  // WaitFirstAttempt for the connect + handshake timeouts, as a pipeline hop starts: OK when
  // connected, and also when the next stage is merely not reachable yet (not listening, not
  // resolvable, silent), which is logged as a warning from `who` while the link keeps
  // retrying in the background. Any other failure (a refused handshake) is returned.
  Status WaitConnectedOrRetrying(const std::string& who);

  // Sends a Forward (or ClearSeq when clear is true); `done` runs exactly once, on the reader
  // thread, or on this thread before Send returns when the link is down.
  void SendForward(const ForwardMsg& msg, Callback done);
  void SendClear(uint64_t id, const std::vector<int32_t>& seqs, Callback done);

  bool connected() const;
  // Incremented on every successful (re)connection.
  uint64_t generation() const;
  LinkStats stats() const;
  const std::string& where() const { return where_; }
  StageInfo peer() const;

 private:
  void Send(FrameType type, uint64_t id, Result<std::vector<uint8_t>> payload, Callback done);
  void Run();        // connect, read, fail, back off, reconnect
  void Heartbeat();  // pings and the dead-peer check
  void ReadLoop(const std::shared_ptr<Connection>& conn);
  void FailAll(const std::string& why);

  const std::string host_;
  const uint16_t port_;
  const StageInfo self_;
  const LinkOptions opts_;
  const std::string where_;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  bool first_done_ = false;
  Status first_status_;
  std::shared_ptr<Connection> conn_;  // null while disconnected
  StageInfo peer_;
  uint64_t generation_ = 0;
  struct Pending {
    Callback done;
    std::chrono::steady_clock::time_point sent;
  };
  std::map<uint64_t, Pending> pending_;
  std::map<uint64_t, std::chrono::steady_clock::time_point> pings_;
  uint64_t next_ping_ = 1;
  std::chrono::steady_clock::time_point last_rx_;
  LinkStats stats_;
  uint64_t closed_bytes_sent_ = 0, closed_bytes_received_ = 0;

  std::mutex write_mu_;  // one frame at a time on the socket
  std::thread runner_, heart_;
};

}  // namespace strata::net
