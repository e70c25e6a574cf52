#include "net/stage.h"

#include <algorithm>

#include "base/log.h"
#include "net/auth.h"

namespace strata::net {
namespace {

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

}  // namespace

// ---- client ----------------------------------------------------------------------------

Result<std::unique_ptr<StageClient>> StageClient::Connect(const std::string& host, uint16_t port,
                                                          const StageInfo& self,
                                                          const StageClientOptions& opts) {
  if (opts.secret.empty()) return Status::Error("stage client: the cluster secret is empty");
  STRATA_ASSIGN_OR_RETURN(std::unique_ptr<Connection> conn, Dial(host, port, opts.connect_timeout_ms));
  Connection& c = *conn;
  const int t = opts.handshake_timeout_ms;
  const std::string where = StrFormat("stage %s:%u", host.c_str(), port);

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

  std::unique_ptr<StageClient> client(new StageClient());
  client->conn_ = std::move(conn);
  client->peer_ = server->info;
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

// ---- server ----------------------------------------------------------------------------

Result<std::unique_ptr<StageServer>> StageServer::Start(std::unique_ptr<Model> model,
                                                        const StageServerOptions& opts) {
  if (opts.secret.empty()) return Status::Error("stage server: the cluster secret is empty");
  if (model == nullptr) return Status::Error("stage server: no model");
  std::unique_ptr<StageServer> s(new StageServer());
  s->opts_ = opts;
  s->info_ = StageInfoFor(*model);
  const ModelConfig& c = model->config();
  STRATA_ASSIGN_OR_RETURN(KvCache cache, KvCache::Create(model->last_layer() - model->first_layer(),
                                                         opts.n_seq, opts.n_ctx, c.kv_dim()));
  s->cache_ = std::make_unique<KvCache>(std::move(cache));
  s->pool_ = std::make_unique<ThreadPool>(std::max(1, opts.threads));
  s->model_ = std::move(model);
  s->forward_ = std::make_unique<strata::Forward>(*s->model_, s->cache_.get(), s->pool_.get());
  if (!s->model_->has_head()) {
    if (opts.next_host.empty() || opts.next_port == 0)
      return Errorf("stage [%u, %u) does not end with the output head: it needs a next stage",
                    s->info_.first, s->info_.last);
    StageClientOptions next = opts.next;
    if (next.secret.empty()) next.secret = opts.secret;
    STRATA_ASSIGN_OR_RETURN(s->next_, StageClient::Connect(opts.next_host, opts.next_port, s->info_, next));
  }
  STRATA_ASSIGN_OR_RETURN(s->listener_, Listener::Bind(opts.host, opts.port));
  StageServer* self = s.get();
  s->acceptor_ = std::thread([self] { self->AcceptLoop(); });
  STRATA_LOG(LogLevel::kInfo, "stage [%u, %u) listening on %s:%u", s->info_.first, s->info_.last,
             opts.host.c_str(), s->port());
  return s;
}

StageServer::~StageServer() { Stop(); }

void StageServer::Stop() {
  if (stop_.exchange(true)) return;
  if (acceptor_.joinable()) acceptor_.join();
  std::list<ConnEntry> conns;
  {
    std::lock_guard<std::mutex> lock(conns_mu_);
    for (auto& e : conns_) e.conn->Shutdown();
    conns.swap(conns_);
  }
  for (auto& e : conns)
    if (e.thread.joinable()) e.thread.join();
}

StageStats StageServer::stats() const {
  std::lock_guard<std::mutex> lock(conns_mu_);
  return stats_;
}

void StageServer::ReapFinished() {
  std::list<ConnEntry> done;
  {
    std::lock_guard<std::mutex> lock(conns_mu_);
    for (auto it = conns_.begin(); it != conns_.end();) {
      auto next = std::next(it);
      if (it->done->load()) done.splice(done.end(), conns_, it);
      it = next;
    }
  }
  for (auto& e : done) e.thread.join();
}

void StageServer::AcceptLoop() {
  while (!stop_) {
    auto accepted = listener_->Accept(100);
    ReapFinished();
    if (!accepted.ok()) {
      STRATA_LOG(LogLevel::kWarn, "stage: %s", accepted.status().message().c_str());
      continue;
    }
    std::shared_ptr<Connection> conn = std::move(accepted).value();
    if (conn == nullptr) continue;
    std::lock_guard<std::mutex> lock(conns_mu_);
    ++stats_.accepted;
    if (live_ >= opts_.max_connections) {
      ++stats_.rejected;
      STRATA_LOG(LogLevel::kWarn, "stage: refusing %s: %d connections already open",
                 conn->peer().c_str(), live_);
      continue;  // closed when conn goes out of scope
    }
    ++live_;
    auto done = std::make_shared<std::atomic<bool>>(false);
    conns_.push_back(ConnEntry{conn, std::thread(), done});
    conns_.back().thread = std::thread([this, conn, done] { Serve(conn, done); });
  }
}

void StageServer::Reject(Connection& conn, ErrorCode code, const Status& why) {
  STRATA_LOG(LogLevel::kWarn, "stage [%u, %u): rejected %s: %s", info_.first, info_.last,
             conn.peer().c_str(), why.message().c_str());
  {
    std::lock_guard<std::mutex> lock(conns_mu_);
    ++stats_.rejected;
  }
  SendError(conn, 0, code, why.message());
}

Status StageServer::Handshake(Connection& c, StageInfo* peer, ErrorCode* code) {
  const int t = opts_.handshake_timeout_ms;
  *code = ErrorCode::kProtocol;
  Frame f;
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
  STRATA_RETURN_IF_ERROR(c.WriteFrame(FrameType::kChallenge, EncodeHello(challenge), t));
  STRATA_RETURN_IF_ERROR(ReadHandshakeFrame(c, FrameType::kAuth, t, &f));
  STRATA_ASSIGN_OR_RETURN(AuthMsg auth, DecodeAuth(f.payload));
  const Digest want = ComputeProof(opts_.secret, Role::kClient, hello.nonce, sn, auth.info, nullptr);
  if (!DigestsEqual(want, auth.proof)) {
    *code = ErrorCode::kAuth;
    return Status::Error("authentication failed: the peer does not know the cluster secret");
  }
  *code = ErrorCode::kIncompatible;
  STRATA_RETURN_IF_ERROR(CheckAdjacent(auth.info, info_));
  *code = ErrorCode::kProtocol;
  AuthMsg mine;
  mine.info = info_;
  mine.proof = ComputeProof(opts_.secret, Role::kServer, hello.nonce, sn, auth.info, &info_);
  STRATA_RETURN_IF_ERROR(c.WriteFrame(FrameType::kAuth, EncodeAuth(mine), t));
  STRATA_RETURN_IF_ERROR(ReadHandshakeFrame(c, FrameType::kReady, t, &f));
  if (!f.payload.empty()) return Status::Error("malformed Ready frame");
  *peer = auth.info;
  return Status::Ok();
}

void StageServer::Serve(std::shared_ptr<Connection> conn, std::shared_ptr<std::atomic<bool>> done) {
  Connection& c = *conn;
  StageInfo peer;
  ErrorCode code = ErrorCode::kProtocol;
  Status hs = Handshake(c, &peer, &code);
  if (!hs.ok()) {
    Reject(c, code, hs);
  } else {
    {
      std::lock_guard<std::mutex> lock(conns_mu_);
      ++stats_.authenticated;
    }
    STRATA_LOG(LogLevel::kInfo, "stage [%u, %u): upstream [%u, %u) connected from %s", info_.first,
               info_.last, peer.first, peer.last, c.peer().c_str());
    while (!stop_) {
      Frame f;
      Status st = c.ReadFrame(&f, opts_.max_frame_bytes, -1);
      if (!st.ok()) {
        if (st.message() == "connection closed by peer" || stop_) {
          STRATA_LOG(LogLevel::kInfo, "stage: %s disconnected", c.peer().c_str());
        } else {
          Reject(c, ErrorCode::kProtocol, st);
        }
        break;
      }
      if (f.type == FrameType::kForward) {
        auto msg = DecodeForward(f.payload);
        if (!msg.ok()) { Reject(c, ErrorCode::kProtocol, msg.status()); break; }
        ResultMsg result;
        ErrorCode code = ErrorCode::kRequest;
        Status run;
        {
          std::lock_guard<std::mutex> lock(compute_mu_);
          run = Process(*msg, &result, &code);
        }
        {
          std::lock_guard<std::mutex> lock(conns_mu_);
          ++(run.ok() ? stats_.requests : stats_.request_errors);
        }
        Status sent;
        if (run.ok()) {
          auto payload = EncodeResult(result);
          sent = payload.ok() ? c.WriteFrame(FrameType::kResult, *payload) : payload.status();
        } else {
          STRATA_LOG(LogLevel::kWarn, "stage [%u, %u): request %llu failed: %s", info_.first,
                     info_.last, static_cast<unsigned long long>(msg->id), run.message().c_str());
          ErrorMsg e{msg->id, code, run.message()};
          sent = c.WriteFrame(FrameType::kError, EncodeError(e));
        }
        if (!sent.ok()) {
          STRATA_LOG(LogLevel::kWarn, "stage: writing to %s: %s", c.peer().c_str(), sent.message().c_str());
          break;
        }
      } else if (f.type == FrameType::kClearSeq) {
        auto msg = DecodeClearSeq(f.payload);
        if (!msg.ok()) { Reject(c, ErrorCode::kProtocol, msg.status()); break; }
        Status st2;
        {
          std::lock_guard<std::mutex> lock(compute_mu_);
          st2 = ClearSeqs(*msg);
        }
        Status sent;
        if (st2.ok()) {
          ResultMsg r;
          r.id = msg->id;
          sent = c.WriteFrame(FrameType::kResult, EncodeResult(r).value());
        } else {
          sent = c.WriteFrame(FrameType::kError, EncodeError({msg->id, ErrorCode::kRequest, st2.message()}));
        }
        if (!sent.ok()) break;
      } else {
        Reject(c, ErrorCode::kProtocol,
               Errorf("unexpected %s frame after the handshake", FrameTypeName(f.type)));
        break;
      }
    }
  }
  c.Shutdown();
  {
    std::lock_guard<std::mutex> lock(conns_mu_);
    --live_;
  }
  done->store(true);
}

Status StageServer::Process(ForwardMsg& msg, ResultMsg* result, ErrorCode* code) {
  *code = ErrorCode::kRequest;
  const ModelConfig& c = model_->config();
  const Batch& b = msg.batch;
  if (model_->has_embedding()) {
    if (msg.hidden_dim != 0) return Status::Error("this stage starts at layer 0: send token ids");
  } else if (msg.hidden_dim != static_cast<uint32_t>(c.hidden)) {
    return Errorf("this stage expects hidden states of size %lld, got %u",
                  static_cast<long long>(c.hidden), msg.hidden_dim);
  }
  STRATA_RETURN_IF_ERROR(forward_->Run(b, msg.hidden_dim ? msg.hidden.data() : nullptr, &out_));
  result->id = msg.id;
  if (model_->has_head()) {
    const size_t vocab = static_cast<size_t>(c.n_vocab);
    const uint32_t rows = static_cast<uint32_t>(out_.size() / vocab);
    if (msg.flags & kWantTokenIds) {
      result->kind = ResultKind::kTokenIds;
      result->rows = rows;
      result->cols = 1;
      result->tokens.resize(rows);
      for (uint32_t r = 0; r < rows; ++r) {
        const float* row = out_.data() + r * vocab;
        result->tokens[r] = static_cast<int32_t>(std::max_element(row, row + vocab) - row);
      }
    } else {
      result->kind = ResultKind::kLogits;
      result->rows = rows;
      result->cols = static_cast<uint32_t>(vocab);
      result->values = out_;
    }
    return Status::Ok();
  }
  ForwardMsg next;
  next.id = msg.id;
  next.flags = msg.flags;
  next.batch = b;
  next.hidden_dim = static_cast<uint32_t>(c.hidden);
  next.encoding = (msg.flags & kQ8Hops) ? Activations::kQ8 : Activations::kF32;
  next.hidden = out_;
  auto r = next_->Forward(next);
  if (!r.ok()) {
    *code = ErrorCode::kDownstream;
    return r.status();
  }
  *result = std::move(r).value();
  return Status::Ok();
}

Status StageServer::ClearSeqs(const ClearSeqMsg& msg) {
  for (int32_t s : msg.seqs)
    if (s < 0 || s >= cache_->n_seq())
      return Errorf("sequence %d is out of range (%d slots)", s, cache_->n_seq());
  for (int32_t s : msg.seqs) cache_->Clear(s);
  if (next_ != nullptr) return next_->ClearSeqs(msg.seqs);
  return Status::Ok();
}

}  // namespace strata::net
