#include "net/handshake.h"

#include <chrono>

#include "net/auth.h"

namespace strata::net {

// Reads the next handshake frame; an Error frame from the peer becomes an error status with its
// message, any other type than `want` a protocol error.
Status ReadHandshakeFrame(Connection& c, FrameType want, int timeout_ms, Frame* f) {
  STRATA_RETURN_IF_ERROR(c.ReadFrame(f, kHandshakeMaxFrameBytes, timeout_ms));
  if (f->type == FrameType::kError && want != FrameType::kError) {
    auto e = DecodeError(f->payload);
    if (!e.ok()) return e.status().With("peer sent a malformed Error");
    return Errorf("refused by %s: %s", c.peer().c_str(), e->message.c_str());
  }
  if (f->type != want)
    return Errorf("expected a %s frame, got %s", FrameTypeName(want), FrameTypeName(f->type));
  return Status::Ok();
}

void SendError(Connection& c, uint64_t id, ErrorCode code, const std::string& message) {
  ErrorMsg e;
  e.id = id;
  e.code = code;
  e.message = message;
  (void)c.WriteFrame(FrameType::kError, EncodeError(e), 1000);
}

Result<StageInfo> ClientHandshake(Connection& c, const std::string& where, const StageInfo& self,
                                  const StageClientOptions& opts) {
  const int t = opts.handshake_timeout_ms;
  STRATA_ASSIGN_OR_RETURN(Nonce cn, RandomNonce());
  HelloMsg hello;
  hello.nonce = cn;
  STRATA_RETURN_IF_ERROR(c.WriteFrame(FrameType::kHello, EncodeHello(hello), t).With(where));

  Frame f;
  STRATA_RETURN_IF_ERROR(ReadHandshakeFrame(c, FrameType::kChallenge, t, &f).With(where));
  STRATA_ASSIGN_OR_RETURN(HelloMsg challenge, DecodeHello(f.payload));
  if (challenge.version != kProtocolVersion)
    return Errorf("%s speaks stage protocol version %u, this side %u", where.c_str(),
                  challenge.version, kProtocolVersion);

  AuthMsg auth;
  auth.info = self;
  auth.proof = ComputeProof(opts.secret, Role::kClient, cn, challenge.nonce, self, nullptr);
  STRATA_RETURN_IF_ERROR(c.WriteFrame(FrameType::kAuth, EncodeAuth(auth), t).With(where));

  STRATA_RETURN_IF_ERROR(ReadHandshakeFrame(c, FrameType::kAuth, t, &f).With(where));
  auto server = DecodeAuth(f.payload);
  if (!server.ok()) {
    SendError(c, 0, ErrorCode::kProtocol, server.status().message());
    return server.status().With(where);
  }
  const Digest want =
      ComputeProof(opts.secret, Role::kServer, cn, challenge.nonce, self, &server->info);
  if (!DigestsEqual(want, server->proof)) {
    SendError(c, 0, ErrorCode::kAuth, "authentication failed: wrong cluster secret");
    return Errorf("%s failed to prove the cluster secret (authentication failed)", where.c_str());
  }
  Status compat = CheckAdjacent(self, server->info);
  if (!compat.ok()) {
    SendError(c, 0, ErrorCode::kIncompatible, compat.message());
    return compat.With(where);
  }
  STRATA_RETURN_IF_ERROR(c.WriteFrame(FrameType::kReady, {}, t).With(where));
  return server->info;
}

Status ServerHandshake(Connection& c, const StageInfo& self, const std::string& secret,
                       int timeout_ms, StageInfo* peer, ErrorCode* code) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  int t = 0;
  auto left = [&]() -> Status {
    const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                        deadline - std::chrono::steady_clock::now())
                        .count();
    if (ms <= 0) return Errorf("handshake not completed within %d ms", timeout_ms);
    t = static_cast<int>(ms);
    return Status::Ok();
  };
  *code = ErrorCode::kProtocol;
  Frame f;
  STRATA_RETURN_IF_ERROR(left());
  // Every failure before the Auth frame is verified is reported as a protocol/auth error.
  STRATA_RETURN_IF_ERROR(ReadHandshakeFrame(c, FrameType::kHello, t, &f));
  STRATA_ASSIGN_OR_RETURN(HelloMsg hello, DecodeHello(f.payload));
  if (hello.version != kProtocolVersion) {
    *code = ErrorCode::kVersion;
    return Errorf("peer speaks stage protocol version %u, this stage speaks %u", hello.version,
                  kProtocolVersion);
  }
  STRATA_ASSIGN_OR_RETURN(Nonce sn, RandomNonce());
  HelloMsg challenge;
  challenge.nonce = sn;
  STRATA_RETURN_IF_ERROR(left());
  STRATA_RETURN_IF_ERROR(c.WriteFrame(FrameType::kChallenge, EncodeHello(challenge), t));
  STRATA_RETURN_IF_ERROR(left());
  STRATA_RETURN_IF_ERROR(ReadHandshakeFrame(c, FrameType::kAuth, t, &f));
  STRATA_ASSIGN_OR_RETURN(AuthMsg auth, DecodeAuth(f.payload));
  const Digest want = ComputeProof(secret, Role::kClient, hello.nonce, sn, auth.info, nullptr);
  if (!DigestsEqual(want, auth.proof)) {
    *code = ErrorCode::kAuth;
    return Status::Error("authentication failed: the peer does not know the cluster secret");
  }
  *code = ErrorCode::kIncompatible;
  STRATA_RETURN_IF_ERROR(CheckAdjacent(auth.info, self));
  *code = ErrorCode::kProtocol;
  AuthMsg mine;
  mine.info = self;
  mine.proof = ComputeProof(secret, Role::kServer, hello.nonce, sn, auth.info, &self);
  STRATA_RETURN_IF_ERROR(left());
  STRATA_RETURN_IF_ERROR(c.WriteFrame(FrameType::kAuth, EncodeAuth(mine), t));
  STRATA_RETURN_IF_ERROR(left());
  STRATA_RETURN_IF_ERROR(ReadHandshakeFrame(c, FrameType::kReady, t, &f));
  if (!f.payload.empty()) return Status::Error("malformed Ready frame");
  *peer = auth.info;
  return Status::Ok();
}

}  // namespace strata::net
