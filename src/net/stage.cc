#include "net/stage.h"

#include <algorithm>

#include "base/log.h"
#include "net/auth.h"
#include "net/stage_internal.h"

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

// ---- client ----------------------------------------------------------------------------

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
  const Digest want = ComputeProof(opts.secret, Role::kServer, cn, challenge.nonce, self, &server->info);
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

Result<std::unique_ptr<StageClient>> StageClient::Connect(const std::string& host, uint16_t port,
                                                          const StageInfo& self,
                                                          const StageClientOptions& opts) {
  if (opts.secret.empty()) return Status::Error("stage client: the cluster secret is empty");
  STRATA_ASSIGN_OR_RETURN(std::unique_ptr<Connection> conn, Dial(host, port, opts.connect_timeout_ms));
  const std::string where = StrFormat("stage %s:%u", host.c_str(), port);
  STRATA_ASSIGN_OR_RETURN(StageInfo peer, ClientHandshake(*conn, where, self, opts));
  std::unique_ptr<StageClient> client(new StageClient());
  client->conn_ = std::move(conn);
  client->peer_ = peer;
  client->opts_ = opts;
  return client;
}

Result<ResultMsg> StageClient::Call(FrameType type, const std::vector<uint8_t>& payload, uint64_t id) {
  if (broken_) return Status::Error("stage connection is broken");
  Status st = conn_->WriteFrame(type, payload, opts_.request_timeout_ms);
  Frame f;
  if (st.ok()) st = conn_->ReadFrame(&f, opts_.max_frame_bytes, opts_.request_timeout_ms);
  if (!st.ok()) {
    broken_ = true;
    return st.With("stage " + conn_->peer());
  }
  if (f.type == FrameType::kError) {
    auto e = DecodeError(f.payload);
    if (!e.ok()) { broken_ = true; return e.status(); }
    if (e->id != id) broken_ = true;
    return Errorf("stage %s: %s", conn_->peer().c_str(), e->message.c_str());
  }
  if (f.type != FrameType::kResult) {
    broken_ = true;
    return Errorf("stage %s sent an unexpected %s frame", conn_->peer().c_str(), FrameTypeName(f.type));
  }
  auto r = DecodeResult(f.payload);
  if (!r.ok()) { broken_ = true; return r.status(); }
  if (r->id != id) {
    broken_ = true;
    return Errorf("stage %s answered request %llu, expected %llu", conn_->peer().c_str(),
                  static_cast<unsigned long long>(r->id), static_cast<unsigned long long>(id));
  }
  return r;
}

Result<ResultMsg> StageClient::Forward(const ForwardMsg& msg) {
  STRATA_ASSIGN_OR_RETURN(std::vector<uint8_t> payload, EncodeForward(msg));
  if (payload.size() > opts_.max_frame_bytes)
    return Errorf("Forward of %zu bytes exceeds the frame limit of %zu", payload.size(),
                  opts_.max_frame_bytes);
  return Call(FrameType::kForward, payload, msg.id);
}

Status StageClient::ClearSeqs(const std::vector<int32_t>& seqs) {
  ClearSeqMsg m;
  m.seqs = seqs;
  return Call(FrameType::kClearSeq, EncodeClearSeq(m), 0).status();
}

}  // namespace strata::net
