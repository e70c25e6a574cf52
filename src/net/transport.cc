#include "net/transport.h"

#include <poll.h>
#include <sys/socket.h>

#include <cerrno>
#include <chrono>

#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>

namespace strata::net {
namespace asio = boost::asio;
using tcp = asio::ip::tcp;

namespace {

int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

int64_t Deadline(int timeout_ms) { return timeout_ms < 0 ? -1 : NowMs() + timeout_ms; }

// Waits for `events` on fd until the deadline (-1: forever). Error on timeout.
Status Wait(int fd, short events, int64_t deadline_ms, const char* what) {
  for (;;) {
    int wait_ms = -1;
    if (deadline_ms >= 0) {
      const int64_t left = deadline_ms - NowMs();
      if (left <= 0) return Errorf("timed out %s", what);
      wait_ms = static_cast<int>(std::min<int64_t>(left, 1 << 30));
    }
    pollfd p{fd, events, 0};
    const int r = ::poll(&p, 1, wait_ms);
    if (r > 0) return Status::Ok();
    if (r == 0) return Errorf("timed out %s", what);
    if (errno != EINTR) return Errorf("poll failed %s", what);
  }
}

std::string Endpoint(const tcp::socket& s) {
  boost::system::error_code ec;
  const tcp::endpoint ep = s.remote_endpoint(ec);
  if (ec) return "?";
  return ep.address().to_string() + ":" + std::to_string(ep.port());
}

}  // namespace

Connection::Connection(std::shared_ptr<asio::io_context> io, tcp::socket socket)
    : io_(std::move(io)), socket_(std::move(socket)) {
  boost::system::error_code ec;
  socket_.set_option(tcp::no_delay(true), ec);
  socket_.non_blocking(true, ec);
  peer_ = Endpoint(socket_);
}

Connection::~Connection() {
  boost::system::error_code ec;
  socket_.close(ec);
}

void Connection::Shutdown() {
  if (!shut_.exchange(true)) ::shutdown(socket_.native_handle(), SHUT_RDWR);
}

Status Connection::ReadExact(uint8_t* p, size_t n, int64_t deadline_ms) {
  size_t got = 0;
  while (got < n) {
    boost::system::error_code ec;
    const size_t r = socket_.read_some(asio::buffer(p + got, n - got), ec);
    if (ec == asio::error::would_block || ec == asio::error::try_again) {
      STRATA_RETURN_IF_ERROR(Wait(socket_.native_handle(), POLLIN, deadline_ms, "reading a frame"));
      continue;
    }
    if (ec == asio::error::eof) {
      return got == 0 ? Status::Error("connection closed by peer")
                      : Status::Error("connection closed by peer in the middle of a frame");
    }
    if (ec) return Errorf("read failed: %s", ec.message().c_str());
    if (shut_) return Status::Error("connection shut down");
    got += r;
    bytes_received_ += r;
  }
  return Status::Ok();
}

Status Connection::WriteExact(const uint8_t* p, size_t n, int64_t deadline_ms) {
  size_t put = 0;
  while (put < n) {
    if (shut_) return Status::Error("connection shut down");
    boost::system::error_code ec;
    const size_t w = socket_.write_some(asio::buffer(p + put, n - put), ec);
    if (ec == asio::error::would_block || ec == asio::error::try_again) {
      STRATA_RETURN_IF_ERROR(
          Wait(socket_.native_handle(), POLLOUT, deadline_ms, "writing a frame"));
      continue;
    }
    if (ec) return Errorf("write failed: %s", ec.message().c_str());
    put += w;
    bytes_sent_ += w;
  }
  return Status::Ok();
}

Status Connection::WriteFrame(FrameType type, const std::vector<uint8_t>& payload, int timeout_ms) {
  if (payload.size() > UINT32_MAX) return Status::Error("frame too large");
  const std::vector<uint8_t> f = EncodeFrame(type, payload);
  return WriteExact(f.data(), f.size(), Deadline(timeout_ms));
}

Status Connection::ReadFrame(Frame* out, size_t max_payload, int timeout_ms) {
  const int64_t deadline = Deadline(timeout_ms);
  uint8_t header[kFrameHeaderBytes];
  STRATA_RETURN_IF_ERROR(ReadExact(header, sizeof header, deadline));
  STRATA_ASSIGN_OR_RETURN(FrameHeader h, DecodeFrameHeader(header, max_payload));
  out->type = h.type;
  out->payload.resize(h.length);
  if (h.length > 0) STRATA_RETURN_IF_ERROR(ReadExact(out->payload.data(), h.length, deadline));
  return Status::Ok();
}

Result<std::unique_ptr<Connection>> Dial(const std::string& host, uint16_t port, int timeout_ms) {
  auto io = std::make_shared<asio::io_context>();
  boost::system::error_code ec;
  tcp::resolver resolver(*io);
  const auto endpoints = resolver.resolve(host, std::to_string(port), ec);
  if (ec) return Errorf("cannot resolve %s: %s", host.c_str(), ec.message().c_str());
  tcp::socket socket(*io);
  for (const auto& e : endpoints) {
    socket.close(ec);
    socket.open(e.endpoint().protocol(), ec);
    if (ec) continue;
    socket.non_blocking(true, ec);
    socket.connect(e.endpoint(), ec);
    if (ec == asio::error::in_progress || ec == asio::error::would_block) {
      Status st = Wait(socket.native_handle(), POLLOUT, Deadline(timeout_ms), "connecting");
      if (!st.ok()) {
        ec = asio::error::timed_out;
        continue;
      }
      int err = 0;
      socklen_t len = sizeof err;
      ::getsockopt(socket.native_handle(), SOL_SOCKET, SO_ERROR, &err, &len);
      ec = err == 0 ? boost::system::error_code()
                    : boost::system::error_code(err, boost::system::system_category());
    }
    if (!ec) return std::make_unique<Connection>(io, std::move(socket));
  }
  return Errorf("cannot connect to %s:%u: %s", host.c_str(), port,
                ec ? ec.message().c_str() : "no address");
}

Listener::Listener(std::shared_ptr<asio::io_context> io, tcp::acceptor acc)
    : io_(std::move(io)), acceptor_(std::move(acc)) {
  boost::system::error_code ec;
  port_ = acceptor_.local_endpoint(ec).port();
}

Result<std::unique_ptr<Listener>> Listener::Bind(const std::string& host, uint16_t port) {
  auto io = std::make_shared<asio::io_context>();
  boost::system::error_code ec;
  const auto addr = asio::ip::make_address(host, ec);
  if (ec) return Errorf("bad listen address '%s': %s", host.c_str(), ec.message().c_str());
  tcp::acceptor acc(*io);
  const tcp::endpoint ep(addr, port);
  acc.open(ep.protocol(), ec);
  if (!ec) acc.set_option(tcp::acceptor::reuse_address(true), ec);
  if (!ec) acc.bind(ep, ec);
  if (!ec) acc.listen(asio::socket_base::max_listen_connections, ec);
  if (!ec) acc.non_blocking(true, ec);
  if (ec) return Errorf("cannot listen on %s:%u: %s", host.c_str(), port, ec.message().c_str());
  return std::unique_ptr<Listener>(new Listener(io, std::move(acc)));
}

Result<std::unique_ptr<Connection>> Listener::Accept(int timeout_ms) {
  Status st = Wait(acceptor_.native_handle(), POLLIN, Deadline(timeout_ms), "accepting");
  if (!st.ok()) return std::unique_ptr<Connection>();
  boost::system::error_code ec;
  tcp::socket s(*io_);
  acceptor_.accept(s, ec);
  if (ec == asio::error::would_block || ec == asio::error::try_again)
    return std::unique_ptr<Connection>();
  if (ec) return Errorf("accept failed: %s", ec.message().c_str());
  return std::make_unique<Connection>(io_, std::move(s));
}

}  // namespace strata::net
