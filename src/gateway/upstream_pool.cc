#include "gateway/upstream_pool.h"

#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>

namespace strata::gateway {

namespace {
void CloseFd(int fd) {
  if (fd >= 0) ::close(fd);
}
}  // namespace

bool ConnectionQuiet(int fd) {
  char c;
  const ssize_t n = ::recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
  return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
}

bool LocalResourceError(const boost::system::error_code& ec) {
  return ec == boost::system::errc::too_many_files_open ||
         ec == boost::system::errc::too_many_files_open_in_system ||
         ec == boost::system::errc::not_enough_memory || ec == boost::system::errc::no_buffer_space;
}

UpstreamPool::UpstreamPool(size_t backends, Options options) : idle_(backends), o_(options) {}

UpstreamPool::~UpstreamPool() {
  for (auto& v : idle_)
    for (const Idle& i : v) CloseFd(i.c.fd);
}

UpstreamPool::Conn UpstreamPool::Take(int b, Clock::time_point now) {
  std::vector<int> stale;
  Conn out;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto& v = idle_[static_cast<size_t>(b)];
    const auto max_idle = std::chrono::milliseconds(o_.idle_timeout_ms);
    while (!v.empty()) {
      const Idle i = v.back();
      v.pop_back();
      if (now - i.since > max_idle || !ConnectionQuiet(i.c.fd)) {
        stale.push_back(i.c.fd);
        continue;
      }
      out = i.c;
      ++reused_;
      break;
    }
  }
  for (int fd : stale) CloseFd(fd);
  return out;
}

void UpstreamPool::Put(int b, Conn c, Clock::time_point now) {
  if (c.fd < 0) return;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto& v = idle_[static_cast<size_t>(b)];
    if (static_cast<int>(v.size()) < o_.max_idle_per_backend) {
      v.push_back({c, now});
      return;
    }
  }
  CloseFd(c.fd);
}

void UpstreamPool::Drop(int b) {
  std::vector<Idle> v;
  {
    std::lock_guard<std::mutex> lock(mu_);
    v.swap(idle_[static_cast<size_t>(b)]);
  }
  for (const Idle& i : v) CloseFd(i.c.fd);
}

void UpstreamPool::Expire(Clock::time_point now) {
  std::vector<int> stale;
  {
    std::lock_guard<std::mutex> lock(mu_);
    const auto max_idle = std::chrono::milliseconds(o_.idle_timeout_ms);
    for (auto& v : idle_) {
      size_t keep = 0;
      for (const Idle& i : v) {
        if (now - i.since > max_idle) {
          stale.push_back(i.c.fd);
        } else {
          v[keep++] = i;
        }
      }
      v.resize(keep);
    }
  }
  for (int fd : stale) CloseFd(fd);
}

size_t UpstreamPool::idle(int b) {
  std::lock_guard<std::mutex> lock(mu_);
  return idle_[static_cast<size_t>(b)].size();
}

size_t UpstreamPool::idle_total() {
  std::lock_guard<std::mutex> lock(mu_);
  size_t n = 0;
  for (const auto& v : idle_) n += v.size();
  return n;
}

// ---- the client watch ----

namespace {

using tcp = boost::asio::ip::tcp;

class SocketWatch : public ClientWatch {
 public:
  struct State : std::enable_shared_from_this<State> {
    State(tcp::socket& s, std::function<void()> f)
        : socket(s), timer(s.get_executor()), on_close(std::move(f)) {}
    tcp::socket& socket;
    boost::asio::steady_timer timer;
    std::function<void()> on_close;
    bool active = true;

    void Arm() {
      socket.async_wait(tcp::socket::wait_read,
                        [self = shared_from_this()](const boost::system::error_code& ec) {
                          if (!self->active || ec == boost::asio::error::operation_aborted) return;
                          if (ec) return self->Fire();
                          self->Check();
                        });
    }
    // Readable: the peer hung up, or sent bytes (left unread: look again in a moment).
    void Check() {
      pollfd p{socket.native_handle(), POLLIN | POLLRDHUP, 0};
      if (::poll(&p, 1, 0) < 0) return;
      if (p.revents & (POLLRDHUP | POLLHUP | POLLERR)) return Fire();
      timer.expires_after(std::chrono::milliseconds(50));
      timer.async_wait([self = shared_from_this()](const boost::system::error_code& ec) {
        if (!ec && self->active) self->Check();
      });
    }
    void Fire() {
      if (!active) return;
      active = false;
      on_close();
    }
  };

  SocketWatch(tcp::socket& s, std::function<void()> f)
      : st_(std::make_shared<State>(s, std::move(f))) {
    st_->Arm();
  }
  ~SocketWatch() override {
    st_->active = false;
    boost::system::error_code ec;
    st_->socket.cancel(ec);
    st_->timer.cancel();
  }

 private:
  std::shared_ptr<State> st_;
};

}  // namespace

std::unique_ptr<ClientWatch> WatchForClose(tcp::socket& socket, std::function<void()> on_close) {
  return std::make_unique<SocketWatch>(socket, std::move(on_close));
}

}  // namespace strata::gateway
