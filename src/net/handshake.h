// The stage handshake on a fresh connection (docs/stage-protocol.md): Hello / Challenge with
// nonces, Auth with the HMAC proofs and each side's StageInfo, Ready. Both halves live here so
// that a client (StageClient, StageLink) and a server (pipeline/stage_server.h) share them.
#pragma once

#include <cstddef>
#include <string>

#include "base/status.h"
#include "net/protocol.h"
#include "net/transport.h"

namespace strata::net {

struct StageClientOptions {
  std::string secret;  // shared cluster secret (required)
  size_t max_frame_bytes = kDefaultMaxFrameBytes;
  int connect_timeout_ms = 5000;
  int handshake_timeout_ms = 5000;
  int request_timeout_ms = 60000;  // waiting for a Result
};

// The client half of the handshake; returns the server's StageInfo. `where` names the peer in
// messages.
Result<StageInfo> ClientHandshake(Connection& c, const std::string& where, const StageInfo& self,
                                  const StageClientOptions& opts);

// The server half as the stage `self`: one deadline of timeout_ms for the whole handshake (a
// peer cannot stretch it frame by frame). On success *peer is the client's StageInfo; on
// failure *code is the ErrorCode to report to the peer.
Status ServerHandshake(Connection& c, const StageInfo& self, const std::string& secret,
                       int timeout_ms, StageInfo* peer, ErrorCode* code);

// Reads the next handshake frame; an Error frame from the peer becomes an error status with its
// message, any other type than `want` a protocol error.
Status ReadHandshakeFrame(Connection& c, FrameType want, int timeout_ms, Frame* f);

// Best effort: an Error frame (1 s write deadline).
void SendError(Connection& c, uint64_t id, ErrorCode code, const std::string& message);

}  // namespace strata::net
