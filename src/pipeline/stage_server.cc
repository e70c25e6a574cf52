// StageServer: accepts authenticated upstream stages; one reader thread per connection feeds a
// FIFO of jobs to a single compute thread, which runs the layers and either answers (last
// stage) or relays to the next stage asynchronously; answers go back by request id.
#include <algorithm>
#include <chrono>

#include "pipeline/stage_server.h"

#include "base/log.h"
#include "net/link.h"
#include "pipeline/stage_info.h"
#include "pipeline/wire.h"

namespace strata::pipeline {

// This file speaks the stage protocol throughout: its messages, codes and links.
using namespace ::strata::net;  // NOLINT(google-build-using-namespace)

struct StageServer::Upstream {
  std::shared_ptr<Connection> conn;
  std::mutex write_mu;
  bool open = true;  // guarded by write_mu
};

struct StageServer::Job {
  std::shared_ptr<Upstream> up;
  bool clear = false;
  ForwardMsg fwd;
  ClearSeqMsg clear_msg;
};

Result<std::unique_ptr<StageServer>> StageServer::Start(std::unique_ptr<Model> model,
                                                        const StageServerOptions& opts) {
  if (opts.secret.empty()) return Status::Error("stage server: the cluster secret is empty");
  if (model == nullptr) return Status::Error("stage server: no model");
  std::unique_ptr<StageServer> s(new StageServer());
  s->opts_ = opts;
  s->info_ = StageInfoFor(*model);
  const ModelConfig& c = model->config();
  STRATA_RETURN_IF_ERROR(KvCache::CheckTypes(opts.cache_type_k, opts.cache_type_v, c.head_dim));
  STRATA_ASSIGN_OR_RETURN(
      KvCache cache, KvCache::Create(model->last_layer() - model->first_layer(), opts.n_seq,
                                     opts.n_ctx, c.kv_dim(), opts.cache_type_k, opts.cache_type_v));
  s->cache_ = std::make_unique<KvCache>(std::move(cache));
  s->pool_ = std::make_unique<ThreadPool>(std::max(1, opts.threads));
  s->model_ = std::move(model);
  s->forward_ = std::make_unique<strata::Forward>(*s->model_, s->cache_.get(), s->pool_.get());
  s->samplers_ = std::make_unique<SlotSamplers>(opts.n_seq);
  if (!s->model_->has_head()) {
    if (opts.next_host.empty() || opts.next_port == 0)
      return Errorf("stage [%u, %u) does not end with the output head: it needs a next stage",
                    s->info_.first, s->info_.last);
    LinkOptions lo;
    lo.client = opts.next;
    if (lo.client.secret.empty()) lo.client.secret = opts.secret;
    lo.heartbeat_ms = opts.heartbeat_ms;
    lo.dead_after_ms = opts.dead_after_ms;
    s->next_ = std::make_unique<StageLink>(opts.next_host, opts.next_port, s->info_, lo);
    STRATA_RETURN_IF_ERROR(s->next_->WaitConnectedOrRetrying(
        StrFormat("stage [%u, %u)", s->info_.first, s->info_.last)));
  }
  STRATA_ASSIGN_OR_RETURN(s->listener_, Listener::Bind(opts.host, opts.port));
  StageServer* self = s.get();
  s->worker_ = std::thread([self] { self->Worker(); });
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
  jobs_cv_.notify_all();
  if (worker_.joinable()) worker_.join();
  if (next_) next_->Stop();  // fails relayed requests; their upstreams are closed already
}

StageStats StageServer::stats() const {
  std::lock_guard<std::mutex> lock(conns_mu_);
  return stats_;
}

bool StageServer::next_stats(LinkStats* out) const {
  if (!next_) return false;
  *out = next_->stats();
  return true;
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
    if (handshaking_ >= opts_.max_handshakes) {
      STRATA_LOG(LogLevel::kWarn, "stage: %d handshakes pending: closing the oldest for %s",
                 handshaking_, conn->peer().c_str());
      CloseOldest(false);
    }
    ++handshaking_;
    auto done = std::make_shared<std::atomic<bool>>(false);
    conns_.push_back(ConnEntry{conn, std::thread(), done});
    conns_.back().thread = std::thread([this, conn, done] { Serve(conn, done); });
  }
}

void StageServer::CloseOldest(bool authenticated) {
  for (auto& e : conns_) {
    if (e.authenticated != authenticated || e.closing || e.done->load()) continue;
    ++stats_.rejected;
    e.closing = true;
    e.conn->Shutdown();
    return;
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
  return ServerHandshake(c, info_, opts_.secret, opts_.handshake_timeout_ms, peer, code);
}

void StageServer::Serve(const std::shared_ptr<Connection>& conn,
                        const std::shared_ptr<std::atomic<bool>>& done) {
  Connection& c = *conn;
  StageInfo peer;
  ErrorCode code = ErrorCode::kProtocol;
  Status hs = Handshake(c, &peer, &code);
  auto up = std::make_shared<Upstream>();
  up->conn = conn;
  bool authenticated = false;
  {
    std::lock_guard<std::mutex> lock(conns_mu_);
    --handshaking_;
    if (hs.ok()) {
      if (live_ >= opts_.max_connections) {
        STRATA_LOG(LogLevel::kWarn, "stage: %d upstreams connected: closing the oldest", live_);
        CloseOldest(true);
      }
      for (auto& e : conns_)
        if (e.conn == conn) e.authenticated = true;
      ++live_;
      authenticated = true;
    }
  }
  if (!hs.ok()) {
    Reject(c, code, hs);
  } else {
    {
      std::lock_guard<std::mutex> lock(conns_mu_);
      ++stats_.authenticated;
    }
    STRATA_LOG(LogLevel::kInfo, "stage [%u, %u): upstream [%u, %u) connected from %s", info_.first,
               info_.last, peer.first, peer.last, c.peer().c_str());
    // A protocol error: an Error frame to the upstream, then the connection ends.
    auto reject = [&](const Status& error) {
      std::lock_guard<std::mutex> lock(up->write_mu);
      Reject(c, ErrorCode::kProtocol, error);
    };
    while (!stop_) {
      Frame f;
      Status st = c.ReadFrame(&f, opts_.max_frame_bytes, -1);
      if (!st.ok()) {
        if (st.message() == "connection closed by peer" || stop_ ||
            st.message() == "connection shut down") {
          STRATA_LOG(LogLevel::kInfo, "stage: %s disconnected", c.peer().c_str());
        } else {
          reject(st);
        }
        break;
      }
      if (f.type == FrameType::kPing) {
        auto p = DecodePing(f.payload);
        if (!p.ok()) {
          reject(p.status());
          break;
        }
        Reply(up, FrameType::kPong, EncodePing(*p));
        continue;
      }
      auto job = std::make_unique<Job>();
      job->up = up;
      if (f.type == FrameType::kForward) {
        auto msg = DecodeForward(f.payload);
        if (!msg.ok()) {
          reject(msg.status());
          break;
        }
        job->fwd = std::move(msg).value();
      } else if (f.type == FrameType::kClearSeq) {
        auto msg = DecodeClearSeq(f.payload);
        if (!msg.ok()) {
          reject(msg.status());
          break;
        }
        job->clear = true;
        job->clear_msg = std::move(msg).value();
      } else {
        reject(Errorf("unexpected %s frame after the handshake", FrameTypeName(f.type)));
        break;
      }
      {
        std::lock_guard<std::mutex> lock(jobs_mu_);
        jobs_.push_back(std::move(job));
      }
      jobs_cv_.notify_one();
    }
  }
  {
    std::lock_guard<std::mutex> lock(up->write_mu);
    up->open = false;
    c.Shutdown();
  }
  {
    std::lock_guard<std::mutex> lock(conns_mu_);
    if (authenticated) --live_;
  }
  done->store(true);
}

void StageServer::Reply(const std::shared_ptr<Upstream>& up, FrameType type,
                        const std::vector<uint8_t>& payload) {
  std::lock_guard<std::mutex> lock(up->write_mu);
  if (!up->open) return;
  const uint64_t before = up->conn->bytes_sent();
  Status st = up->conn->WriteFrame(type, payload, 10000);
  {
    std::lock_guard<std::mutex> l2(conns_mu_);
    stats_.bytes_upstream += up->conn->bytes_sent() - before;
  }
  if (!st.ok()) {
    STRATA_LOG(LogLevel::kWarn, "stage: writing to %s: %s", up->conn->peer().c_str(),
               st.message().c_str());
    up->open = false;
    up->conn->Shutdown();
  }
}

void StageServer::ReplyError(const std::shared_ptr<Upstream>& up, uint64_t id, ErrorCode code,
                             const std::string& message) {
  STRATA_LOG(LogLevel::kWarn, "stage [%u, %u): request %llu failed: %s", info_.first, info_.last,
             static_cast<unsigned long long>(id), message.c_str());
  {
    std::lock_guard<std::mutex> lock(conns_mu_);
    ++stats_.request_errors;
    if (code == ErrorCode::kStale) ++stats_.stale_errors;
  }
  Reply(up, FrameType::kError, EncodeError(ErrorMsg{id, code, message}));
}

void StageServer::Worker() {
  for (;;) {
    std::unique_ptr<Job> job;
    {
      std::unique_lock<std::mutex> lock(jobs_mu_);
      jobs_cv_.wait(lock, [this] { return stop_ || !jobs_.empty(); });
      if (stop_) return;
      job = std::move(jobs_.front());
      jobs_.pop_front();
    }
    if (job->clear) {
      RunClear(job->up, job->clear_msg);
    } else {
      RunForward(job->up, job->fwd);
    }
  }
}

void StageServer::RunForward(const std::shared_ptr<Upstream>& up, ForwardMsg& msg) {
  const ModelConfig& c = model_->config();
  Batch b = FromWire(std::move(msg.batch));
  const std::vector<KvCopy> copies = FromWire(msg.copies);
  if (model_->has_embedding()) {
    if (msg.hidden_dim != 0)
      return ReplyError(up, msg.id, ErrorCode::kRequest,
                        "this stage starts at layer 0: send token ids");
  } else if (msg.hidden_dim != static_cast<uint32_t>(c.hidden)) {
    return ReplyError(up, msg.id, ErrorCode::kRequest,
                      StrFormat("this stage expects hidden states of size %lld, got %u",
                                static_cast<long long>(c.hidden), msg.hidden_dim));
  }
  const auto t0 = std::chrono::steady_clock::now();
  bool stale = false;
  Status st = PrepareKv(*cache_, b, copies, &stale);
  if (st.ok()) st = forward_->Run(b, msg.hidden_dim ? msg.hidden.data() : nullptr, &out_);
  ResultMsg result;
  result.id = msg.id;
  if (st.ok() && model_->has_head()) {
    const size_t vocab = static_cast<size_t>(c.n_vocab);
    const uint32_t rows = static_cast<uint32_t>(out_.size() / vocab);
    if (msg.flags & kSample) {
      result.kind = ResultKind::kTokenIds;
      result.cols = 1;
      st = SampleRows(*samplers_, b, FromWire(std::move(msg.samples)), out_,
                      static_cast<int32_t>(vocab), &result.tokens, &stale, nullptr,
                      msg.hidden_dim == 0);
      result.rows = static_cast<uint32_t>(result.tokens.size());
    } else if (msg.flags & kWantTokenIds) {
      result.kind = ResultKind::kTokenIds;
      result.rows = rows;
      result.cols = 1;
      result.tokens.resize(rows);
      for (uint32_t r = 0; r < rows; ++r) {
        const float* row = out_.data() + r * vocab;
        result.tokens[r] = static_cast<int32_t>(std::max_element(row, row + vocab) - row);
      }
    } else {
      result.kind = ResultKind::kLogits;
      result.rows = rows;
      result.cols = static_cast<uint32_t>(vocab);
      result.values = out_;
    }
  }
  {
    std::lock_guard<std::mutex> lock(conns_mu_);
    stats_.compute_seconds +=
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (st.ok()) stats_.tokens += static_cast<uint64_t>(b.size());
  }
  if (!st.ok())
    return ReplyError(up, msg.id, stale ? ErrorCode::kStale : ErrorCode::kRequest, st.message());
  if (model_->has_head()) {
    auto payload = EncodeResult(result);
    if (!payload.ok())
      return ReplyError(up, msg.id, ErrorCode::kRequest, payload.status().message());
    {
      std::lock_guard<std::mutex> lock(conns_mu_);
      ++stats_.requests;
    }
    return Reply(up, FrameType::kResult, *payload);
  }
  // Relay: the next stage's answer goes upstream when it arrives; meanwhile this thread is free.
  ForwardMsg next;
  next.id = next_id_.fetch_add(1);
  next.flags = msg.flags;
  next.batch = ToWire(std::move(b));
  next.hidden_dim = static_cast<uint32_t>(c.hidden);
  next.encoding = (msg.flags & kQ8Hops) ? Activations::kQ8 : Activations::kF32;
  next.hidden = out_;
  next.copies = std::move(msg.copies);
  next.samples = std::move(msg.samples);
  const uint64_t orig = msg.id;
  next_->SendForward(next, [this, up, orig](LinkReply r) {
    if (!r.status.ok())
      return ReplyError(up, orig,
                        r.code == ErrorCode::kStale ? ErrorCode::kStale : ErrorCode::kDownstream,
                        r.status.message());
    r.result.id = orig;
    auto payload = EncodeResult(r.result);
    if (!payload.ok())
      return ReplyError(up, orig, ErrorCode::kDownstream, payload.status().message());
    {
      std::lock_guard<std::mutex> lock(conns_mu_);
      ++stats_.requests;
    }
    Reply(up, FrameType::kResult, *payload);
  });
}

void StageServer::RunClear(const std::shared_ptr<Upstream>& up, const ClearSeqMsg& msg) {
  for (int32_t s : msg.seqs)
    if (s < 0 || s >= cache_->n_seq())
      return ReplyError(up, msg.id, ErrorCode::kRequest,
                        StrFormat("sequence %d is out of range (%d slots)", s, cache_->n_seq()));
  for (int32_t s : msg.seqs) {
    cache_->Clear(s);
    samplers_->Clear(s);
  }
  ResultMsg empty;
  empty.id = msg.id;
  if (!next_) return Reply(up, FrameType::kResult, EncodeResult(empty).value());
  const uint64_t orig = msg.id;
  next_->SendClear(next_id_.fetch_add(1), msg.seqs, [this, up, orig](const LinkReply& r) {
    if (!r.status.ok()) return ReplyError(up, orig, ErrorCode::kDownstream, r.status.message());
    ResultMsg e;
    e.id = orig;
    Reply(up, FrameType::kResult, EncodeResult(e).value());
  });
}

}  // namespace strata::pipeline
