// Helpers shared by the stage protocol's client and server code (not a public interface).
#pragma once

#include <string>

#include "net/protocol.h"
#include "net/transport.h"

namespace strata::net {

// Reads the next handshake frame; an Error frame from the peer becomes an error status with its
// message, any other type than `want` a protocol error.
Status ReadHandshakeFrame(Connection& c, FrameType want, int timeout_ms, Frame* f);

// Best effort: an Error frame (1 s write deadline).
void SendError(Connection& c, uint64_t id, ErrorCode code, const std::string& message);

}  // namespace strata::net
