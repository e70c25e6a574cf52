// The HTTP server core: listener, accept loop, connection accounting, sessions, graceful stop.
#include "http/server.h"

#include <sys/resource.h>

#include <array>
#include <cctype>
#include <csignal>
#include <thread>

#include <boost/beast/ssl.hpp>

#include "base/log.h"

namespace strata::http {

namespace ssl = asio::ssl;
using Clock = std::chrono::steady_clock;

// A session as the listener sees it (for the graceful stop and idle eviction).
struct Server::Ctl {
  asio::any_io_executor ex;
  std::string client;
  std::atomic<bool> idle{false};  // waiting for a request's first byte
  // Strand of ex only:
  tcp::socket* socket = nullptr;  // null once the session ended
  bool waiting = false;           // in the first-byte wait

  // Ends the session's wait for a request (on its strand): it closes.
  static void CancelWait(const std::shared_ptr<Ctl>& c) {
    asio::post(c->ex, [c] {
      beast::error_code ec;
      if (c->socket && c->waiting) c->socket->cancel(ec);
    });
  }
};

namespace {

auto Redirect(beast::error_code& ec) { return asio::redirect_error(asio::use_awaitable, ec); }

template <typename S>
constexpr bool kTls = !std::is_same_v<S, beast::tcp_stream>;

template <typename S>
class StreamImpl : public Stream {
 public:
  StreamImpl(S& s, beast::flat_buffer& buf, std::string client, std::chrono::milliseconds write)
      : s_(s), buf_(buf), client_(std::move(client)), write_(write) {}
  Task<bool> Write(bhttp::response<bhttp::string_body>& res) override {
    beast::get_lowest_layer(s_).expires_after(write_);
    beast::error_code ec;
    co_await bhttp::async_write(s_, res, Redirect(ec));
    co_return !ec;
  }
  Task<bool> WriteHeader(bhttp::response_serializer<bhttp::empty_body>& sr) override {
    beast::get_lowest_layer(s_).expires_after(write_);
    beast::error_code ec;
    co_await bhttp::async_write_header(s_, sr, Redirect(ec));
    co_return !ec;
  }
  Task<bool> WriteChunk(std::string_view data) override {
    beast::get_lowest_layer(s_).expires_after(write_);
    beast::error_code ec;
    co_await asio::async_write(s_, bhttp::make_chunk(asio::buffer(data.data(), data.size())),
                               Redirect(ec));
    co_return !ec;
  }
  Task<bool> WriteLastChunk() override {
    beast::get_lowest_layer(s_).expires_after(write_);
    beast::error_code ec;
    co_await asio::async_write(s_, bhttp::make_chunk_last(), Redirect(ec));
    co_return !ec;
  }
  tcp::socket& socket() override { return beast::get_lowest_layer(s_).socket(); }
  beast::flat_buffer& buffer() override { return buf_; }
  const std::string& client() const override { return client_; }
  bool tls() const override { return kTls<S>; }

 private:
  S& s_;
  beast::flat_buffer& buf_;
  std::string client_;
  std::chrono::milliseconds write_;
};

// Read errors that end a connection without an answer.
bool Quiet(const beast::error_code& ec) {
  return ec == bhttp::error::end_of_stream || ec == beast::error::timeout ||
         ec == asio::error::eof || ec == asio::error::connection_reset ||
         ec == asio::error::operation_aborted || ec == asio::error::broken_pipe ||
         ec == ssl::error::stream_truncated;
}

bhttp::response<bhttp::string_body> MakeResponse(const std::string& server, unsigned version,
                                                 bool keep_alive, Reply r) {
  bhttp::response<bhttp::string_body> res{static_cast<bhttp::status>(r.status), version};
  res.set(bhttp::field::server, server);
  res.set(bhttp::field::content_type, r.content_type);
  for (const auto& [k, v] : r.headers) res.set(k, v);
  res.keep_alive(keep_alive);
  res.body() = std::move(r.body);
  res.prepare_payload();
  return res;
}

// After an answer that ends the connection: stop sending, then read and discard what the
// client still sends for a bounded time and size, so that it can read the answer instead of
// getting a reset.
Task<void> HalfCloseAndDrain(beast::tcp_stream& low, uint64_t max_bytes,
                             std::chrono::milliseconds max_time) {
  beast::error_code ec;
  low.socket().shutdown(tcp::socket::shutdown_send, ec);
  low.expires_after(max_time);
  uint64_t drained = 0;
  std::array<char, 16384> sink;
  while (drained < max_bytes) {
    const size_t n = co_await low.async_read_some(asio::buffer(sink), Redirect(ec));
    if (ec) break;
    drained += n;
  }
}

}  // namespace

Server::Server(asio::io_context& ioc, Handler& handler, ServerOptions o)
    : ioc_(ioc),
      h_(handler),
      o_(std::move(o)),
      acceptor_(asio::make_strand(ioc)),
      tracker_(o_.limits.max_connections, o_.limits.max_connections_per_client),
      stop_timer_(std::make_unique<asio::steady_timer>(ioc)) {}

Server::~Server() = default;

Status Server::Listen() {
  beast::error_code ec;
  const auto addr = asio::ip::make_address(o_.host, ec);
  if (ec) return Errorf("%s: invalid host '%s'", o_.name.c_str(), o_.host.c_str());
  const tcp::endpoint ep(addr, static_cast<unsigned short>(o_.port));
  acceptor_.open(ep.protocol(), ec);
  if (!ec) acceptor_.set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec) acceptor_.bind(ep, ec);
  if (!ec) acceptor_.listen(asio::socket_base::max_listen_connections, ec);
  if (ec)
    return Errorf("cannot listen on %s:%d: %s", o_.host.c_str(), o_.port, ec.message().c_str());
  port_ = acceptor_.local_endpoint().port();
  return Status::Ok();
}

void Server::Start() {
  std::signal(SIGPIPE, SIG_IGN);
  asio::co_spawn(acceptor_.get_executor(), Accept(), asio::detached);
}

void Server::SetTls(std::shared_ptr<ssl::context> ctx) {
  std::lock_guard<std::mutex> lock(tls_mu_);
  tls_ = std::move(ctx);
}

bool Server::EvictIdle(const std::string& client) {
  std::lock_guard<std::mutex> lock(ctl_mu_);
  for (auto& [id, c] : ctls_) {  // oldest first
    if (!client.empty() && c->client != client) continue;
    bool idle = true;
    if (!c->idle.compare_exchange_strong(idle, false)) continue;
    Ctl::CancelWait(c);
    return true;
  }
  return false;
}

Task<void> Server::Accept() {
  for (;;) {
    tcp::socket socket(asio::make_strand(ioc_));
    beast::error_code ec;
    co_await acceptor_.async_accept(socket, Redirect(ec));
    if (stopping_ || !acceptor_.is_open()) co_return;
    if (ec) {
      // Out of descriptors (EMFILE/ENFILE) or similar: back off instead of spinning.
      asio::steady_timer t(co_await asio::this_coro::executor, std::chrono::milliseconds(50));
      co_await t.async_wait(Redirect(ec));
      continue;
    }
    socket.set_option(tcp::no_delay(true), ec);
    const auto remote = socket.remote_endpoint(ec);
    if (ec) continue;  // already gone
    std::string client = remote.address().to_string();
    auto d = tracker_.Acquire(client);
    if (d != ConnectionTracker::Decision::kAccepted) {
      // Idle connections never starve new ones: the oldest idle one (of this client when
      // the client is at its cap) makes room.
      if (EvictIdle(d == ConnectionTracker::Decision::kClientFull ? client : std::string())) {
        tracker_.ForceAcquire(client);
        d = ConnectionTracker::Decision::kAccepted;
      }
    }
    auto ex = socket.get_executor();
    if (d != ConnectionTracker::Decision::kAccepted) {
      ++rejected_;
      asio::co_spawn(ex, Refuse(std::move(socket), d), asio::detached);
      continue;
    }
    auto ctl = std::make_shared<Ctl>();
    ctl->ex = ex;
    ctl->client = client;
    {
      std::lock_guard<std::mutex> lock(ctl_mu_);
      ctls_.emplace(next_ctl_++, ctl);
    }
    std::shared_ptr<ssl::context> tls;
    {
      std::lock_guard<std::mutex> lock(tls_mu_);
      tls = tls_;
    }
    if (tls) {
      beast::ssl_stream<beast::tcp_stream> s(std::move(socket), *tls);
      asio::co_spawn(ex, Session(std::move(s), std::move(ctl), tls), asio::detached);
    } else {
      asio::co_spawn(ex, Session(beast::tcp_stream(std::move(socket)), std::move(ctl), nullptr),
                     asio::detached);
    }
  }
}

Task<void> Server::Refuse(tcp::socket socket, ConnectionTracker::Decision why) {
  beast::tcp_stream s(std::move(socket));
  std::shared_ptr<ssl::context> tls;
  {
    std::lock_guard<std::mutex> lock(tls_mu_);
    tls = tls_;
  }
  if (!tls) {  // TLS: closed without an answer (it would need a handshake)
    const std::string msg = why == ConnectionTracker::Decision::kServerFull
                                ? "too many open connections"
                                : "too many open connections from this address";
    Reply r = h_.OnTransportError(503, msg, nullptr);
    r.headers.emplace_back("Retry-After", "1");
    auto res = MakeResponse(o_.server_header, 11, false, std::move(r));
    s.expires_after(std::chrono::seconds(1));
    beast::error_code ec;
    co_await bhttp::async_write(s, res, Redirect(ec));
    if (!ec) co_await HalfCloseAndDrain(s, 64 * 1024, std::chrono::milliseconds(200));
  }
  beast::error_code ec;
  s.socket().close(ec);
}

template <typename S>
Task<void> Server::Session(S stream, std::shared_ptr<Ctl> ctl, std::shared_ptr<void> keep) {
  auto& low = beast::get_lowest_layer(stream);
  ctl->socket = &low.socket();
  beast::flat_buffer buf;
  StreamImpl<S> s(stream, buf, ctl->client, o_.limits.write);
  try {
    bool open = true;
    if constexpr (kTls<S>) {
      beast::error_code ec;
      low.expires_after(o_.limits.request_read);
      co_await stream.async_handshake(ssl::stream_base::server, Redirect(ec));
      open = !ec;
    }
    while (open && !stopping_) open = co_await ServeOne(stream, s, *ctl);
  } catch (const std::exception& e) {
    STRATA_LOG(LogLevel::kWarn, "%s: connection ended by an exception: %s", o_.name.c_str(),
               e.what());
  }
  // Explicit (not RAII): a frame destroyed with its io_context must not touch the server.
  beast::error_code ec;
  low.socket().shutdown(tcp::socket::shutdown_both, ec);
  low.socket().close(ec);
  ctl->socket = nullptr;
  ctl->idle = false;
  {
    std::lock_guard<std::mutex> lock(ctl_mu_);
    for (auto it = ctls_.begin(); it != ctls_.end(); ++it)
      if (it->second == ctl) {
        ctls_.erase(it);
        break;
      }
  }
  tracker_.Release(ctl->client);
}

// Framing checks the parser does not make: a bounded number of header lines (431), and no
// transfer coding other than chunked (request smuggling: "xchunked" next to a Content-Length).
static std::optional<std::pair<int, std::string>> CheckFraming(const Request& req,
                                                               const Limits& lim) {
  size_t fields = 0;
  for (auto it = req.begin(); it != req.end(); ++it) ++fields;
  if (fields > lim.header_fields)
    return std::make_pair(431, StrFormat("too many header fields (%zu; the limit is %zu)", fields,
                                         lim.header_fields));
  const auto te = req.find(bhttp::field::transfer_encoding);
  if (te != req.end()) {
    std::string v(te->value());
    for (char& ch : v) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
    const size_t b = v.find_first_not_of(" \t"), e = v.find_last_not_of(" \t");
    v = b == std::string::npos ? std::string() : v.substr(b, e - b + 1);
    if (v != "chunked")
      return std::make_pair(400, "unsupported Transfer-Encoding '" + std::string(te->value()) +
                                     "' (only chunked is accepted)");
  }
  return std::nullopt;
}

template <typename S>
Task<bool> Server::ServeOne(S& stream, Stream& s, Ctl& ctl) {
  auto& low = beast::get_lowest_layer(stream);
  beast::flat_buffer& buf = s.buffer();
  beast::error_code ec;
  if (buf.size() == 0) {  // idle (keep-alive): wait for the first byte
    low.expires_after(o_.limits.idle);
    ctl.waiting = true;
    ctl.idle = true;
    const size_t n = co_await stream.async_read_some(buf.prepare(16384), Redirect(ec));
    ctl.waiting = false;
    ctl.idle = false;
    if (ec || stopping_) co_return false;
    buf.commit(n);
  }
  // One deadline for the whole request: a client trickling bytes cannot hold on past it.
  low.expires_after(o_.limits.request_read);
  bhttp::request_parser<bhttp::string_body> parser;
  parser.header_limit(static_cast<std::uint32_t>(o_.limits.header_bytes));
  parser.body_limit(o_.limits.body_bytes);
  co_await bhttp::async_read_header(stream, buf, parser, Redirect(ec));
  if (!ec) {
    if (auto bad = CheckFraming(parser.get(), o_.limits)) {
      auto res = MakeResponse(o_.server_header, parser.get().version(), false,
                              h_.OnTransportError(bad->first, bad->second, &parser.get()));
      if (co_await s.Write(res))
        co_await HalfCloseAndDrain(low, o_.limits.drain_bytes, o_.limits.drain);
      co_return false;
    }
    if (auto r = h_.OnHeaders(parser.get(), s)) {
      // Rejected on its headers: the body is never read.
      const bool keep = parser.is_done() && parser.get().keep_alive();
      auto res = MakeResponse(o_.server_header, parser.get().version(), keep, std::move(*r));
      const bool ok = co_await s.Write(res);
      if (!keep && ok) co_await HalfCloseAndDrain(low, o_.limits.drain_bytes, o_.limits.drain);
      co_return keep&& ok;
    }
    co_await bhttp::async_read(stream, buf, parser, Redirect(ec));
  }
  if (ec) {
    if (Quiet(ec)) co_return false;
    int status = 400;
    std::string msg = "malformed HTTP request: " + ec.message();
    if (ec == bhttp::error::body_limit) {
      status = 413;
      msg = StrFormat("request body exceeds the limit of %llu bytes",
                      static_cast<unsigned long long>(o_.limits.body_bytes));
    } else if (ec == bhttp::error::header_limit) {
      status = 431;
      msg = "request headers too large";
    }
    const bool got = parser.is_header_done();
    auto res = MakeResponse(o_.server_header, got ? parser.get().version() : 11, false,
                            h_.OnTransportError(status, msg, got ? &parser.get() : nullptr));
    if (co_await s.Write(res))
      co_await HalfCloseAndDrain(low, o_.limits.drain_bytes, o_.limits.drain);
    co_return false;
  }
  low.expires_never();  // the handler sets its own deadlines
  Request req = parser.release();
  co_return co_await h_.OnRequest(s, req);
}

void Server::Stop(std::chrono::milliseconds grace, std::function<void()> done) {
  if (stopping_.exchange(true)) return;
  asio::post(acceptor_.get_executor(), [this] {
    beast::error_code ec;
    acceptor_.close(ec);
  });
  {
    std::lock_guard<std::mutex> lock(ctl_mu_);
    for (auto& [id, c] : ctls_) Ctl::CancelWait(c);
  }
  WatchStop(Clock::now() + grace, std::move(done));
}

void Server::WatchStop(Clock::time_point until, std::function<void()> done) {
  if (tracker_.total() == 0 || Clock::now() >= until) {
    done();
    return;
  }
  stop_timer_->expires_after(std::chrono::milliseconds(20));
  stop_timer_->async_wait([this, until, done = std::move(done)](const beast::error_code&) mutable {
    WatchStop(until, std::move(done));
  });
}

void Server::StopOnSignals(std::chrono::milliseconds grace) {
  signals_ = std::make_unique<asio::signal_set>(ioc_, SIGINT, SIGTERM);
  signals_->async_wait([this, grace](const beast::error_code& ec, int) {
    if (ec) return;
    Stop(grace, [this] { ioc_.stop(); });
  });
}

void RaiseFileLimit() {
  rlimit rl{};
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
}

void RunThreads(asio::io_context& ioc, int n) {
  std::vector<std::thread> io;
  for (int i = 1; i < std::max(1, n); ++i) io.emplace_back([&ioc] { ioc.run(); });
  ioc.run();
  for (auto& t : io) t.join();
}

std::string_view PathOf(std::string_view target) {
  const size_t q = target.find('?');
  return q == std::string_view::npos ? target : target.substr(0, q);
}

bool SecretEquals(std::string_view given, std::string_view secret) {
  unsigned diff = given.size() == secret.size() ? 0u : 1u;
  for (size_t i = 0; i < secret.size(); ++i)
    diff |= static_cast<unsigned>(static_cast<unsigned char>(secret[i]) ^
                                  static_cast<unsigned char>(i < given.size() ? given[i] : 0));
  return diff == 0;
}

std::string_view BearerToken(const Request& req) {
  const auto auth = req[bhttp::field::authorization];
  const std::string_view a(auth.data(), auth.size());
  constexpr std::string_view kPrefix = "Bearer ";
  if (a.size() <= kPrefix.size() || a.substr(0, kPrefix.size()) != kPrefix) return {};
  return a.substr(kPrefix.size());
}

}  // namespace strata::http
