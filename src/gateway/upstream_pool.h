// Keep-alive connections from the gateway to its backends, and the watch on a client
// connection while a non-streamed request is proxied.
//
// UpstreamPool keeps, per backend, a bounded stack of idle connections as native descriptors
// (so that a request on any event-loop strand can adopt one into its own socket). A connection
// comes back only after a complete exchange whose answer allowed keep-alive; it is closed when
// the backend's stack is full, when it stayed idle longer than the idle timeout, when the peer
// closed it (checked before reuse), and when the backend failed or went unhealthy (Drop).
// Thread-safe; no I/O but non-blocking peeks and close().
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <utility>
#include <vector>

#include <boost/asio.hpp>

namespace strata::gateway {

class UpstreamPool {
 public:
  using Clock = std::chrono::steady_clock;
  struct Options {
    int max_idle_per_backend = 32;  // 0: no pooling (a new connection per request)
    int idle_timeout_ms = 15000;    // below the node's default --idle-timeout of 30 s
  };
  // An idle connection: a connected TCP socket's descriptor and its address family.
  struct Conn {
    int fd = -1;
    bool v6 = false;
  };

  UpstreamPool(size_t backends, Options options);
  ~UpstreamPool();
  UpstreamPool(const UpstreamPool&) = delete;
  UpstreamPool& operator=(const UpstreamPool&) = delete;

  // The most recently returned idle connection of backend `b` that is still open (fd -1: none);
  // expired connections and those the peer closed are closed on the way.
  Conn Take(int b, Clock::time_point now = Clock::now());
  // Gives back a connection after a clean exchange (closed when the pool is full or off).
  void Put(int b, Conn c, Clock::time_point now = Clock::now());
  // Closes every idle connection of backend `b` (it failed, its circuit opened, or a probe
  // found it unhealthy).
  void Drop(int b);
  // Closes the connections idle for longer than the idle timeout (all backends).
  void Expire(Clock::time_point now = Clock::now());

  size_t idle(int b);
  size_t idle_total();
  uint64_t reused() const { return reused_.load(); }

 private:
  struct Idle {
    Conn c;
    Clock::time_point since;
  };
  std::mutex mu_;
  std::vector<std::vector<Idle>> idle_;
  Options o_;
  std::atomic<uint64_t> reused_{0};
};

// True when a connection has nothing unread and the peer has not closed or reset it.
bool ConnectionQuiet(int fd);

// True for errors of this process (out of file descriptors), which say nothing about a backend.
bool LocalResourceError(const boost::system::error_code& ec);

// A watch on a client connection, ended when the object is destroyed.
class ClientWatch {
 public:
  virtual ~ClientWatch() = default;
};

// Watches `socket` (nothing is read from it): `on_close` runs once, on the socket's executor,
// if the peer closes or resets the connection. Bytes the client sends meanwhile (a pipelined
// request, a TLS record) are left in the socket. The socket must outlive the returned watch,
// and no other wait may be pending on it (destroying the watch cancels the socket's waits).
std::unique_ptr<ClientWatch> WatchForClose(boost::asio::ip::tcp::socket& socket,
                                           std::function<void()> on_close);

}  // namespace strata::gateway
