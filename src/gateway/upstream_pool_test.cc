// The upstream keep-alive pool over socket pairs: reuse order, bounds, expiry, peer closes,
// unread bytes, Drop; and the classification of the gateway's own resource errors.
#include "gateway/upstream_pool.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

namespace strata::gateway {
namespace {

using Clock = UpstreamPool::Clock;

struct Pair {
  int mine = -1, peer = -1;
  Pair() {
    int fds[2];
    EXPECT_EQ(::socketpair(AF_UNIX, SOCK_STREAM, 0, fds), 0);
    mine = fds[0];
    peer = fds[1];
  }
};

bool IsOpen(int fd) { return ::fcntl(fd, F_GETFD) != -1; }

TEST(UpstreamPool, ReusesTheMostRecentPerBackend) {
  UpstreamPool pool(2, {4, 1000});
  EXPECT_EQ(pool.Take(0).fd, -1);
  Pair a, b, c;
  const auto t = Clock::now();
  pool.Put(0, {a.mine, false}, t);
  pool.Put(0, {b.mine, false}, t);
  pool.Put(1, {c.mine, true}, t);
  EXPECT_EQ(pool.idle(0), 2u);
  EXPECT_EQ(pool.idle_total(), 3u);
  EXPECT_EQ(pool.Take(0, t).fd, b.mine);  // LIFO: the warmest connection first
  const auto c1 = pool.Take(1, t);
  EXPECT_EQ(c1.fd, c.mine);
  EXPECT_TRUE(c1.v6);
  EXPECT_EQ(pool.Take(1, t).fd, -1);  // backends do not share
  EXPECT_EQ(pool.reused(), 2u);
  for (int fd : {a.peer, b.mine, b.peer, c.mine, c.peer}) ::close(fd);
}

TEST(UpstreamPool, BoundedPerBackend) {
  UpstreamPool pool(1, {2, 1000});
  Pair p[3];
  for (auto& x : p) pool.Put(0, {x.mine, false});
  EXPECT_EQ(pool.idle(0), 2u);
  EXPECT_FALSE(IsOpen(p[2].mine));  // beyond the bound: closed
  UpstreamPool off(1, {0, 1000});
  Pair q;
  off.Put(0, {q.mine, false});
  EXPECT_EQ(off.idle(0), 0u);
  EXPECT_FALSE(IsOpen(q.mine));
}

TEST(UpstreamPool, ExpiredClosedAndDirtyConnectionsAreNotReused) {
  UpstreamPool pool(1, {8, 100});
  const auto t = Clock::now();
  Pair old, closed, dirty, good;
  pool.Put(0, {old.mine, false}, t - std::chrono::milliseconds(500));
  pool.Put(0, {good.mine, false}, t);
  pool.Put(0, {closed.mine, false}, t);
  pool.Put(0, {dirty.mine, false}, t);
  ::close(closed.peer);                       // the node closed it
  ASSERT_EQ(::write(dirty.peer, "x", 1), 1);  // bytes nobody asked for
  EXPECT_EQ(pool.Take(0, t).fd, good.mine);
  EXPECT_FALSE(IsOpen(dirty.mine));
  EXPECT_FALSE(IsOpen(closed.mine));
  EXPECT_EQ(pool.Take(0, t).fd, -1);  // the old one expired
  EXPECT_FALSE(IsOpen(old.mine));
  // Expire() sweeps without a Take.
  Pair later;
  pool.Put(0, {later.mine, false}, t);
  pool.Expire(t + std::chrono::milliseconds(50));
  EXPECT_EQ(pool.idle(0), 1u);
  pool.Expire(t + std::chrono::milliseconds(150));
  EXPECT_EQ(pool.idle(0), 0u);
  EXPECT_FALSE(IsOpen(later.mine));
}

TEST(UpstreamPool, DropClosesABackendsConnections) {
  UpstreamPool pool(2, {8, 1000});
  Pair a, b, c;
  pool.Put(0, {a.mine, false});
  pool.Put(0, {b.mine, false});
  pool.Put(1, {c.mine, false});
  pool.Drop(0);
  EXPECT_EQ(pool.idle(0), 0u);
  EXPECT_EQ(pool.idle(1), 1u);
  EXPECT_FALSE(IsOpen(a.mine));
  EXPECT_FALSE(IsOpen(b.mine));
  EXPECT_TRUE(IsOpen(c.mine));
}

TEST(UpstreamPool, LocalResourceErrors) {
  using boost::system::errc::make_error_code;
  namespace errc = boost::system::errc;
  EXPECT_TRUE(LocalResourceError(make_error_code(errc::too_many_files_open)));
  EXPECT_TRUE(LocalResourceError(make_error_code(errc::too_many_files_open_in_system)));
  EXPECT_TRUE(LocalResourceError(boost::asio::error::no_descriptors));
  EXPECT_FALSE(LocalResourceError(boost::asio::error::connection_refused));
  EXPECT_FALSE(LocalResourceError(boost::asio::error::eof));
}

// The client watch: fires when the peer closes (also with unread bytes pending, e.g. a
// pipelined request), not while it is merely quiet or sending, and never after it ended.
TEST(ClientWatch, FiresOnPeerCloseOnly) {
  namespace asio = boost::asio;
  using tcp = asio::ip::tcp;
  asio::io_context io;
  tcp::acceptor acc(io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
  auto connect = [&](tcp::socket* client, tcp::socket* server) {
    client->connect(acc.local_endpoint());
    acc.accept(*server);
  };
  auto run_for = [&](int ms) {
    io.restart();
    io.run_for(std::chrono::milliseconds(ms));
  };

  tcp::socket c1(io), s1(io);
  connect(&c1, &s1);
  int fired = 0;
  auto w1 = WatchForClose(s1, [&] { ++fired; });
  run_for(100);
  EXPECT_EQ(fired, 0);  // quiet
  asio::write(c1, asio::buffer(std::string("POST / HTTP/1.1\r\n")));
  run_for(150);
  EXPECT_EQ(fired, 0);  // sending is not leaving
  c1.close();
  run_for(300);
  EXPECT_EQ(fired, 1);  // closed with unread bytes pending
  char buf[64];
  EXPECT_GT(s1.read_some(asio::buffer(buf)), 0u);  // the bytes were left in the socket

  tcp::socket c2(io), s2(io);
  connect(&c2, &s2);
  int fired2 = 0;
  {
    auto w2 = WatchForClose(s2, [&] { ++fired2; });
    run_for(50);
  }
  c2.close();
  run_for(150);
  EXPECT_EQ(fired2, 0);  // the watch had ended
}

}  // namespace
}  // namespace strata::gateway
