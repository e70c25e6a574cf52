#include "net/stage_client.h"

#include "net/handshake.h"

namespace strata::net {

Result<std::unique_ptr<StageClient>> StageClient::Connect(const std::string& host, uint16_t port,
                                                          const StageInfo& self,
                                                          const StageClientOptions& opts) {
  if (opts.secret.empty()) return Status::Error("stage client: the cluster secret is empty");
  STRATA_ASSIGN_OR_RETURN(std::unique_ptr<Connection> conn,
                          Dial(host, port, opts.connect_timeout_ms));
  const std::string where = StrFormat("stage %s:%u", host.c_str(), port);
  STRATA_ASSIGN_OR_RETURN(StageInfo peer, ClientHandshake(*conn, where, self, opts));
  std::unique_ptr<StageClient> client(new StageClient());
  client->conn_ = std::move(conn);
  client->peer_ = peer;
  client->opts_ = opts;
  return client;
}

Result<ResultMsg> StageClient::Call(FrameType type, const std::vector<uint8_t>& payload,
                                    uint64_t id) {
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
    if (!e.ok()) {
      broken_ = true;
      return e.status();
    }
    if (e->id != id) broken_ = true;
    return Errorf("stage %s: %s", conn_->peer().c_str(), e->message.c_str());
  }
  if (f.type != FrameType::kResult) {
    broken_ = true;
    return Errorf("stage %s sent an unexpected %s frame", conn_->peer().c_str(),
                  FrameTypeName(f.type));
  }
  auto r = DecodeResult(f.payload);
  if (!r.ok()) {
    broken_ = true;
    return r.status();
  }
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
