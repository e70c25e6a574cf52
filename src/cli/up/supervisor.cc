#include "cli/up/supervisor.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <nlohmann/json.hpp>
#include <thread>

namespace strata::cli::up {
namespace {

int g_signal_pipe[2] = {-1, -1};

extern "C" void OnSignal(int sig) {
  const int saved = errno;
  const unsigned char b = static_cast<unsigned char>(sig);
  if (g_signal_pipe[1] >= 0) (void)!write(g_signal_pipe[1], &b, 1);
  errno = saved;
}

using Clock = std::chrono::steady_clock;
double SecondsSince(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

constexpr size_t kTailLines = 25;

}  // namespace

std::string DescribeExit(int ws) {
  char buf[96];
  if (WIFEXITED(ws)) {
    std::snprintf(buf, sizeof buf, "exited with status %d", WEXITSTATUS(ws));
  } else if (WIFSIGNALED(ws)) {
    const char* abbrev = sigabbrev_np(WTERMSIG(ws));
    std::snprintf(buf, sizeof buf, "exited with signal %d (SIG%s)", WTERMSIG(ws),
                  abbrev ? abbrev : "?");
  } else {
    std::snprintf(buf, sizeof buf, "stopped (wait status %d)", ws);
  }
  return buf;
}

Supervisor::Supervisor(SupervisorOptions o) : o_(std::move(o)) {}

Supervisor::~Supervisor() {
  StopAll();
  for (Child& c : children_) {
    if (c.out_fd >= 0) close(c.out_fd);
    if (c.log_fd >= 0) close(c.log_fd);
  }
}

Status Supervisor::InstallSignalHandlers() {
  if (g_signal_pipe[0] < 0 && pipe2(g_signal_pipe, O_CLOEXEC | O_NONBLOCK) != 0)
    return Errorf("pipe: %s", std::strerror(errno));
  struct sigaction sa {};
  sa.sa_handler = OnSignal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;
  for (int sig : {SIGINT, SIGTERM, SIGCHLD, SIGHUP})
    if (sigaction(sig, &sa, nullptr) != 0) return Errorf("sigaction: %s", std::strerror(errno));
  std::signal(SIGPIPE, SIG_IGN);
  return Status::Ok();
}

void Supervisor::Say(const std::string& text) {
  std::fprintf(stdout, "%-8s | %s\n", "up", text.c_str());
  std::fflush(stdout);
}

const std::vector<pid_t> Supervisor::pids() const {
  std::vector<pid_t> out;
  for (const Child& c : children_)
    if (c.alive) out.push_back(c.pid);
  return out;
}

Status Supervisor::Start(const ChildSpec& spec) {
  Child c;
  c.spec = spec;
  if (!o_.log_dir.empty()) {
    const std::string path = o_.log_dir + "/" + spec.name + ".log";
    c.log_fd = open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (c.log_fd < 0) return Errorf("cannot open '%s': %s", path.c_str(), std::strerror(errno));
  }
  children_.push_back(std::move(c));
  return Spawn(children_.back());
}

Status Supervisor::Spawn(Child& c) {
  // Everything the child needs is prepared before fork (only async-signal-safe calls after).
  std::vector<std::string> argv_s;
  argv_s.push_back(o_.exe);
  argv_s.insert(argv_s.end(), c.spec.args.begin(), c.spec.args.end());
  std::vector<char*> argv;
  argv.reserve(argv_s.size() + 1);
  for (std::string& s : argv_s) argv.push_back(s.data());
  argv.push_back(nullptr);
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) return Errorf("pipe: %s", std::strerror(errno));
  const pid_t parent = getpid();
  const pid_t pid = fork();
  if (pid < 0) {
    close(fds[0]);
    close(fds[1]);
    return Errorf("fork: %s", std::strerror(errno));
  }
  if (pid == 0) {
    setpgid(0, 0);  // Ctrl-C on the terminal reaches `up` only
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(127);  // `up` died before the request took effect
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    dup2(fds[1], STDOUT_FILENO);
    dup2(fds[1], STDERR_FILENO);
    execv(argv[0], argv.data());
    const char msg[] = "strata up: exec failed\n";
    (void)!write(STDERR_FILENO, msg, sizeof msg - 1);
    _exit(127);
  }
  close(fds[1]);
  fcntl(fds[0], F_SETFL, O_NONBLOCK);
  if (c.out_fd >= 0) close(c.out_fd);
  c.out_fd = fds[0];
  c.pid = pid;
  c.alive = true;
  c.ready = false;
  return Status::Ok();
}

void Supervisor::Line(Child& c, const std::string& line) {
  if (o_.prefix_logs) {
    std::fprintf(stdout, "%-8s | %s\n", c.spec.name.c_str(), line.c_str());
    std::fflush(stdout);
  }
  c.tail.push_back(line);
  if (c.tail.size() > kTailLines) c.tail.pop_front();
}

void Supervisor::Drain(Child& c) {
  char buf[8192];
  for (;;) {
    const ssize_t n = read(c.out_fd, buf, sizeof buf);
    if (n <= 0) {
      if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
        if (!c.partial.empty()) Line(c, c.partial);
        c.partial.clear();
        close(c.out_fd);
        c.out_fd = -1;
      }
      return;
    }
    if (c.log_fd >= 0) (void)!write(c.log_fd, buf, static_cast<size_t>(n));
    c.partial.append(buf, static_cast<size_t>(n));
    size_t nl;
    while ((nl = c.partial.find('\n')) != std::string::npos) {
      std::string line = c.partial.substr(0, nl);
      if (!line.empty() && line.back() == '\r') line.pop_back();
      Line(c, line);
      c.partial.erase(0, nl + 1);
    }
  }
}

int Supervisor::Pump(int wait_ms) {
  std::vector<pollfd> pfds;
  pfds.push_back({g_signal_pipe[0], POLLIN, 0});
  std::vector<size_t> idx;
  for (size_t i = 0; i < children_.size(); ++i) {
    if (children_[i].out_fd < 0) continue;
    pfds.push_back({children_[i].out_fd, POLLIN, 0});
    idx.push_back(i);
  }
  const int n = poll(pfds.data(), pfds.size(), wait_ms);
  if (n <= 0) return 0;
  for (size_t k = 1; k < pfds.size(); ++k)
    if (pfds[k].revents != 0) Drain(children_[idx[k - 1]]);
  int stop = 0;
  if (pfds[0].revents & POLLIN) {
    unsigned char sigs[64];
    const ssize_t m = read(g_signal_pipe[0], sigs, sizeof sigs);
    for (ssize_t i = 0; i < m; ++i)
      if (sigs[i] == SIGINT || sigs[i] == SIGTERM || sigs[i] == SIGHUP) stop = sigs[i];
  }
  return stop;
}

void Supervisor::Reap(std::vector<size_t>* died) {
  for (size_t i = 0; i < children_.size(); ++i) {
    Child& c = children_[i];
    if (!c.alive) continue;
    int ws = 0;
    const pid_t r = waitpid(c.pid, &ws, WNOHANG);
    if (r != c.pid) continue;
    c.alive = false;
    c.ready = false;
    if (c.out_fd >= 0) Drain(c);  // its last words
    if (!stopping_) Say(c.spec.name + " (pid " + std::to_string(c.pid) + ") " + DescribeExit(ws));
    if (died) died->push_back(i);
  }
}

std::string Supervisor::TailText(const Child& c) const {
  std::string out;
  for (const std::string& l : c.tail) out += "\n    " + l;
  if (!o_.log_dir.empty()) out += "\n  (full log: " + o_.log_dir + "/" + c.spec.name + ".log)";
  return out;
}

Status Supervisor::WaitHealthy(double timeout_s) {
  const auto start = Clock::now();
  auto last_probe = Clock::now() - std::chrono::seconds(1);
  for (;;) {
    if (const int sig = Pump(100); sig != 0)
      return Errorf("interrupted by signal %d while starting", sig);
    std::vector<size_t> died;
    Reap(&died);
    if (!died.empty()) {
      const Child& c = children_[died.front()];
      return Errorf("%s failed to start (it exited); the end of its log:%s", c.spec.name.c_str(),
                    TailText(c).c_str());
    }
    if (std::chrono::duration<double>(Clock::now() - last_probe).count() >= 0.25) {
      last_probe = Clock::now();
      bool all = true, others = true;  // the gateway is probed once the nodes are ready
      for (const Child& c : children_)
        if (c.spec.min_healthy_backends == 0) others = others && c.ready;
      for (Child& c : children_) {
        if (!c.ready && (c.spec.min_healthy_backends == 0 || others)) {
          std::string body;
          c.ready = HttpGet(c.spec.health_host, c.spec.health_port, c.spec.health_path, 1000,
                            &body) == 200;
          if (c.ready && c.spec.min_healthy_backends > 0) {
            const auto j = nlohmann::json::parse(body, nullptr, false);
            c.ready =
                j.is_object() && j.value("healthy_backends", 0) >= c.spec.min_healthy_backends;
          }
        }
        all = all && c.ready;
      }
      if (all) return Status::Ok();
    }
    if (SecondsSince(start) > timeout_s) {
      std::string msg = Errorf("not ready after %.0f s:", timeout_s).message();
      for (const Child& c : children_)
        if (!c.ready)
          msg += "\n  " + c.spec.name + " (http://" + c.spec.health_host + ":" +
                 std::to_string(c.spec.health_port) + c.spec.health_path +
                 " does not answer 200); the end of its log:" + TailText(c);
      return Status::Error(msg);
    }
  }
}

int Supervisor::Run() {
  for (;;) {
    if (const int sig = Pump(500); sig != 0) {
      Say(std::string("stopping (") + (sigabbrev_np(sig) ? "SIG" : "signal ") +
          (sigabbrev_np(sig) ? sigabbrev_np(sig) : std::to_string(sig).c_str()) + ")");
      StopAll();
      Say("stopped");
      return 0;
    }
    std::vector<size_t> died;
    Reap(&died);
    for (size_t i : died) {
      Child& c = children_[i];
      if (c.restarts < o_.max_restarts && !c.spec.essential) {
        ++c.restarts;
        Say("restarting " + c.spec.name + " (" + std::to_string(c.restarts) + " of " +
            std::to_string(o_.max_restarts) + ")");
        const Status st = Spawn(c);
        if (st.ok()) continue;
        Say("cannot restart " + c.spec.name + ": " + st.message());
      }
      if (c.spec.essential || c.spec.needed) {
        Say(c.spec.name +
            " is needed to serve: stopping everything; the end of its log:" + TailText(c));
        StopAll();
        return 1;
      }
      size_t left = 0;
      for (const Child& o : children_)
        if (o.alive && o.spec.name != "gateway") ++left;
      if (left == 0) {
        Say("no node is left: stopping");
        StopAll();
        return 1;
      }
      Say(c.spec.name + " stays down; serving with the other nodes");
    }
  }
}

void Supervisor::StopAll() {
  stopping_ = true;
  bool any = false;
  for (const Child& c : children_)
    if (c.alive) {
      kill(c.pid, SIGTERM);
      any = true;
    }
  if (!any) return;
  const auto start = Clock::now();
  for (;;) {
    const int sig = Pump(50);
    Reap(nullptr);
    bool left = false;
    for (const Child& c : children_) left = left || c.alive;
    if (!left) return;
    if (sig != 0 || SecondsSince(start) * 1000 > o_.stop_grace_ms) break;  // 2nd Ctrl-C: now
  }
  for (const Child& c : children_)
    if (c.alive) {
      Say(c.spec.name + " did not stop: SIGKILL");
      kill(c.pid, SIGKILL);
    }
  for (Child& c : children_)
    if (c.alive) {
      int ws = 0;
      waitpid(c.pid, &ws, 0);
      c.alive = false;
      if (c.out_fd >= 0) Drain(c);
    }
}

int Supervisor::HttpGet(const std::string& host, int port, const std::string& path, int timeout_ms,
                        std::string* body) {
  namespace asio = boost::asio;
  namespace http = boost::beast::http;
  try {
    asio::io_context ioc;
    asio::ip::tcp::socket sock(ioc);
    const asio::ip::tcp::endpoint ep(asio::ip::make_address(host),
                                     static_cast<unsigned short>(port));
    sock.connect(ep);
    timeval tv{timeout_ms / 1000, (timeout_ms % 1000) * 1000};
    setsockopt(sock.native_handle(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(sock.native_handle(), SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    http::request<http::empty_body> req(http::verb::get, path, 11);
    req.set(http::field::host, host);
    req.set(http::field::connection, "close");
    http::write(sock, req);
    boost::beast::flat_buffer buf;
    http::response<http::string_body> res;
    http::read(sock, buf, res);
    if (body) *body = res.body();
    return static_cast<int>(res.result_int());
  } catch (const std::exception&) {
    return 0;
  }
}

}  // namespace strata::cli::up
