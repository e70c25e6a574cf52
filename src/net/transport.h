// Blocking framed TCP transport for the stage protocol over Boost.Asio sockets: TCP_NODELAY,
// per-call deadlines (poll on the non-blocking socket), frame size limits checked before any
// payload allocation. One thread may read while another writes (the pipeline's reader and
// writer threads); Shutdown() may be called from any thread to wake a blocked reader.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>

#include "base/status.h"
#include "net/protocol.h"

namespace strata::net {

struct Frame {
  FrameType type = FrameType::kHello;
  std::vector<uint8_t> payload;
};

class Connection {
 public:
  Connection(std::shared_ptr<boost::asio::io_context> io, boost::asio::ip::tcp::socket socket);
  ~Connection();
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  // timeout_ms < 0: no deadline.
  Status WriteFrame(FrameType type, const std::vector<uint8_t>& payload, int timeout_ms = -1);
  // Reads one frame whose payload is at most max_payload bytes (checked from the header,
  // before reading or allocating the payload).
  Status ReadFrame(Frame* out, size_t max_payload, int timeout_ms = -1);

  void Shutdown();  // thread-safe: both directions, wakes blocked calls
  const std::string& peer() const { return peer_; }
  uint64_t bytes_sent() const { return bytes_sent_; }
  uint64_t bytes_received() const { return bytes_received_; }

 private:
  Status ReadExact(uint8_t* p, size_t n, int64_t deadline_ms);
  Status WriteExact(const uint8_t* p, size_t n, int64_t deadline_ms);

  std::shared_ptr<boost::asio::io_context> io_;
  boost::asio::ip::tcp::socket socket_;
  std::string peer_;
  std::atomic<bool> shut_{false};
  std::atomic<uint64_t> bytes_sent_{0}, bytes_received_{0};
};

// Connects to host:port (numeric address or name) with TCP_NODELAY.
Result<std::unique_ptr<Connection>> Dial(const std::string& host, uint16_t port, int timeout_ms);

class Listener {
 public:
  // port 0: any free port (see port()).
  static Result<std::unique_ptr<Listener>> Bind(const std::string& host, uint16_t port);
  uint16_t port() const { return port_; }
  // Waits up to timeout_ms for a connection. OK with a null pointer on timeout.
  Result<std::unique_ptr<Connection>> Accept(int timeout_ms);

 private:
  Listener(std::shared_ptr<boost::asio::io_context> io, boost::asio::ip::tcp::acceptor acc);
  std::shared_ptr<boost::asio::io_context> io_;
  boost::asio::ip::tcp::acceptor acceptor_;
  uint16_t port_ = 0;
};

}  // namespace strata::net
