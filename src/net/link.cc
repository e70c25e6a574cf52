#include "net/link.h"

#include <algorithm>

#include "base/log.h"
#include "net/handshake.h"

namespace strata::net {

using Clock = std::chrono::steady_clock;

StageLink::StageLink(std::string host, uint16_t port, StageInfo self, LinkOptions opts)
    : host_(std::move(host)),
      port_(port),
      self_(std::move(self)),
      opts_(std::move(opts)),
      where_(StrFormat("stage %s:%u", host_.c_str(), port_)) {
  runner_ = std::thread([this] { Run(); });
  heart_ = std::thread([this] { Heartbeat(); });
}

StageLink::~StageLink() { Stop(); }

void StageLink::Stop() {
  std::shared_ptr<Connection> c;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stop_ && !runner_.joinable()) return;
    stop_ = true;
    c = conn_;
  }
  cv_.notify_all();
  if (c) c->Shutdown();
  if (runner_.joinable()) runner_.join();
  if (heart_.joinable()) heart_.join();
}

Status StageLink::WaitFirstAttempt(int timeout_ms) {
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait_for(lock, std::chrono::milliseconds(timeout_ms),
               [this] { return first_done_ || stop_; });
  if (!first_done_) return Errorf("%s: no answer within %d ms", where_.c_str(), timeout_ms);
  return first_status_;
}

Status StageLink::WaitConnectedOrRetrying(const std::string& who) {
  Status first =
      WaitFirstAttempt(opts_.client.connect_timeout_ms + opts_.client.handshake_timeout_ms);
  if (first.ok()) return first;
  const std::string& m = first.message();
  const bool unreachable = m.rfind("cannot connect", 0) == 0 || m.rfind("cannot resolve", 0) == 0 ||
                           m.find("no answer within") != std::string::npos;
  if (!unreachable) return first.With("connecting to the next stage");
  STRATA_LOG(LogLevel::kWarn,
             "%s: next stage %s:%u not reachable yet (%s); retrying in the background", who.c_str(),
             host_.c_str(), port_, m.c_str());
  return Status::Ok();
}

bool StageLink::connected() const {
  std::lock_guard<std::mutex> lock(mu_);
  return conn_ != nullptr;
}

uint64_t StageLink::generation() const {
  std::lock_guard<std::mutex> lock(mu_);
  return generation_;
}

StageInfo StageLink::peer() const {
  std::lock_guard<std::mutex> lock(mu_);
  return peer_;
}

LinkStats StageLink::stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  LinkStats s = stats_;
  s.connected = conn_ != nullptr;
  s.bytes_sent = closed_bytes_sent_ + (conn_ ? conn_->bytes_sent() : 0);
  s.bytes_received = closed_bytes_received_ + (conn_ ? conn_->bytes_received() : 0);
  return s;
}

void StageLink::SendForward(const ForwardMsg& msg, Callback done) {
  const Clock::time_point t0 = Clock::now();
  auto payload = EncodeForward(msg);
  if (payload.ok() && payload->size() > opts_.client.max_frame_bytes)
    payload = Errorf("Forward of %zu bytes exceeds the frame limit of %zu", payload->size(),
                     opts_.client.max_frame_bytes);
  Send(FrameType::kForward, msg.id, std::move(payload), std::move(done));
  const double secs = std::chrono::duration<double>(Clock::now() - t0).count();
  std::lock_guard<std::mutex> lock(mu_);
  stats_.forward_send_seconds += secs;
  stats_.forward_tokens += static_cast<uint64_t>(msg.batch.size());
}

void StageLink::SendClear(uint64_t id, const std::vector<int32_t>& seqs, Callback done) {
  ClearSeqMsg m;
  m.id = id;
  m.seqs = seqs;
  Send(FrameType::kClearSeq, id, EncodeClearSeq(m), std::move(done));
}

void StageLink::Send(FrameType type, uint64_t id, Result<std::vector<uint8_t>> payload,
                     Callback done) {
  if (!payload.ok()) {
    done(LinkReply{payload.status(), ErrorCode::kRequest, {}});
    return;
  }
  std::lock_guard<std::mutex> wlock(write_mu_);
  std::shared_ptr<Connection> c;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (conn_ == nullptr || stop_) {
      const std::string why = stats_.last_error.empty() ? "not connected" : stats_.last_error;
      Status st = Errorf("%s is unavailable (reconnecting): %s", where_.c_str(), why.c_str());
      // Not under the locks: the callback may do anything.
      mu_.unlock();
      done(LinkReply{st, ErrorCode::kDownstream, {}});
      mu_.lock();
      return;
    }
    if (pending_.count(id)) {
      mu_.unlock();
      done(LinkReply{
          Errorf("request id %llu is already in flight", static_cast<unsigned long long>(id)),
          ErrorCode::kRequest,
          {}});
      mu_.lock();
      return;
    }
    pending_[id] = Pending{std::move(done), Clock::now()};
    c = conn_;
  }
  Status st = c->WriteFrame(type, *payload, opts_.client.request_timeout_ms);
  if (!st.ok()) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stats_.last_error = "writing: " + st.message();
    }
    c->Shutdown();  // the reader fails every pending request, this one included
  }
}

void StageLink::Run() {
  int backoff = opts_.backoff_min_ms;
  std::string last_logged;
  for (;;) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (stop_) break;
    }
    Status st;
    std::shared_ptr<Connection> conn;
    StageInfo peer;
    auto d = Dial(host_, port_, opts_.client.connect_timeout_ms);
    if (!d.ok()) {
      st = d.status();
    } else {
      conn = std::move(d).value();
      auto p = ClientHandshake(*conn, where_, self_, opts_.client);
      if (!p.ok()) {
        st = p.status();
        conn.reset();
      } else {
        peer = *p;
      }
    }
    if (!st.ok()) {
      if (st.message() != last_logged) {
        STRATA_LOG(LogLevel::kWarn, "%s: %s (retrying)", where_.c_str(), st.message().c_str());
        last_logged = st.message();
      }
      std::unique_lock<std::mutex> lock(mu_);
      if (!first_done_) {
        first_done_ = true;
        first_status_ = st;
      }
      stats_.last_error = st.message();
      cv_.notify_all();
      cv_.wait_for(lock, std::chrono::milliseconds(backoff), [this] { return stop_; });
      backoff = std::min(backoff * 2, opts_.backoff_max_ms);
      continue;
    }
    backoff = opts_.backoff_min_ms;
    last_logged.clear();
    {
      std::lock_guard<std::mutex> lock(mu_);
      conn_ = conn;
      peer_ = peer;
      ++generation_;
      ++stats_.connects;
      last_rx_ = Clock::now();
      first_done_ = true;
      first_status_ = Status::Ok();
      if (stop_) conn->Shutdown();
    }
    cv_.notify_all();
    STRATA_LOG(LogLevel::kInfo, "%s: connected (layers [%u, %u))", where_.c_str(), peer.first,
               peer.last);
    ReadLoop(conn);
  }
}

void StageLink::ReadLoop(const std::shared_ptr<Connection>& conn) {
  std::string why;
  for (;;) {
    Frame f;
    Status st = conn->ReadFrame(&f, opts_.client.max_frame_bytes, -1);
    if (!st.ok()) {
      why = st.message();
      break;
    }
    const auto now = Clock::now();
    if (f.type == FrameType::kPong) {
      auto p = DecodePing(f.payload);
      if (!p.ok()) {
        why = p.status().message();
        break;
      }
      std::lock_guard<std::mutex> lock(mu_);
      last_rx_ = now;
      auto it = pings_.find(p->nonce);
      if (it != pings_.end()) {
        const double rtt = std::chrono::duration<double>(now - it->second).count();
        stats_.last_rtt_seconds = rtt;
        stats_.rtt_seconds_sum += rtt;
        stats_.rtt_count++;
        pings_.erase(it);
      }
      continue;
    }
    LinkReply reply;
    uint64_t id = 0;
    if (f.type == FrameType::kResult) {
      auto r = DecodeResult(f.payload);
      if (!r.ok()) {
        why = r.status().message();
        break;
      }
      id = r->id;
      reply.result = std::move(r).value();
    } else if (f.type == FrameType::kError) {
      auto e = DecodeError(f.payload);
      if (!e.ok()) {
        why = e.status().message();
        break;
      }
      if (e->id == 0) {
        why = "refused: " + e->message;
        break;
      }
      id = e->id;
      reply.code = e->code;
      reply.status = Errorf("%s: %s", where_.c_str(), e->message.c_str());
    } else {
      why = StrFormat("unexpected %s frame", FrameTypeName(f.type));
      break;
    }
    Callback done;
    {
      std::lock_guard<std::mutex> lock(mu_);
      last_rx_ = now;
      auto it = pending_.find(id);
      if (it == pending_.end()) {
        why = StrFormat("reply to unknown request %llu", static_cast<unsigned long long>(id));
      } else {
        done = std::move(it->second.done);
        stats_.requests++;
        stats_.request_seconds += std::chrono::duration<double>(now - it->second.sent).count();
        pending_.erase(it);
      }
    }
    if (!done) break;
    done(std::move(reply));
  }
  std::map<uint64_t, Pending> failed;
  bool stopping;
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping = stop_;
    closed_bytes_sent_ += conn->bytes_sent();
    closed_bytes_received_ += conn->bytes_received();
    conn_ = nullptr;
    failed.swap(pending_);
    pings_.clear();
    stats_.failures++;
    // A cut-off detected by the heartbeat left its reason in last_error.
    if (why == "connection shut down" && !stats_.last_error.empty() && !stopping)
      why = stats_.last_error;
    stats_.last_error = "connection lost: " + why;
  }
  conn->Shutdown();
  if (!stopping)
    STRATA_LOG(LogLevel::kWarn, "%s: connection lost (%s); %zu requests failed; reconnecting",
               where_.c_str(), why.c_str(), failed.size());
  const std::string msg = StrFormat("%s: connection lost (%s)", where_.c_str(), why.c_str());
  for (auto& [id, p] : failed) p.done(LinkReply{Status::Error(msg), ErrorCode::kDownstream, {}});
}

void StageLink::Heartbeat() {
  std::unique_lock<std::mutex> lock(mu_);
  while (!stop_) {
    cv_.wait_for(lock, std::chrono::milliseconds(opts_.heartbeat_ms), [this] { return stop_; });
    if (stop_ || conn_ == nullptr) continue;
    const auto now = Clock::now();
    const auto silent =
        std::chrono::duration_cast<std::chrono::milliseconds>(now - last_rx_).count();
    if (silent > opts_.dead_after_ms) {
      stats_.last_error =
          StrFormat("no answer for %lld ms (stage cut off?)", static_cast<long long>(silent));
      conn_->Shutdown();  // wakes the reader, which fails the pending requests
      continue;
    }
    std::shared_ptr<Connection> c = conn_;
    const uint64_t nonce = next_ping_++;
    pings_[nonce] = now;
    if (pings_.size() > 64) pings_.erase(pings_.begin());
    lock.unlock();
    {
      std::unique_lock<std::mutex> wlock(write_mu_, std::try_to_lock);
      // Busy writing a request: that traffic is enough; the dead check still applies.
      if (wlock.owns_lock()) {
        Status st =
            c->WriteFrame(FrameType::kPing, EncodePing(PingMsg{nonce}), opts_.dead_after_ms);
        if (!st.ok()) c->Shutdown();
      }
    }
    lock.lock();
  }
}

}  // namespace strata::net
