// A StageClient: the simple synchronous upstream side of one stage connection (handshake, then
// Forward / ClearSeq calls, one at a time). The pipelined, self-healing upstream side is a
// StageLink (net/link.h); the server side, which runs layers, is pipeline/stage_server.h.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "base/status.h"
#include "net/handshake.h"
#include "net/protocol.h"
#include "net/transport.h"

namespace strata::net {

class StageClient {
 public:
  // Connects to the stage at host:port and runs the handshake as the stage `self` (the range
  // just before the server's). Errors carry the server's refusal message.
  static Result<std::unique_ptr<StageClient>> Connect(const std::string& host, uint16_t port,
                                                      const StageInfo& self,
                                                      const StageClientOptions& opts);

  // Sends a batch and waits for its result. A request error reported by the stage comes back
  // as an error Status with the stage's message; the connection stays usable after it.
  Result<ResultMsg> Forward(const ForwardMsg& msg);
  // Clears KV slots on this stage and every later one.
  Status ClearSeqs(const std::vector<int32_t>& seqs);

  const StageInfo& peer() const { return peer_; }
  uint64_t bytes_sent() const { return conn_->bytes_sent(); }
  uint64_t bytes_received() const { return conn_->bytes_received(); }

 private:
  StageClient() = default;
  Result<ResultMsg> Call(FrameType type, const std::vector<uint8_t>& payload, uint64_t id);

  std::unique_ptr<Connection> conn_;
  StageInfo peer_;
  StageClientOptions opts_;
  bool broken_ = false;  // a protocol violation or I/O error: no further calls
};

}  // namespace strata::net
