// `strata up`'s process supervisor: starts children (the same binary, other subcommands),
// streams their output with a name prefix (and into RUN_DIR/NAME.log), waits until each
// answers its health URL, reports a child that dies (restarting nodes a few times), and stops
// them all on SIGINT/SIGTERM: SIGTERM, a grace period, then SIGKILL.
//
// No orphans: each child asks the kernel for SIGKILL when `up` dies (PR_SET_PDEATHSIG,
// checked against a parent that died before the request) and runs in its own process group,
// so that a terminal's Ctrl-C reaches `up` alone, which stops the children in order.
#pragma once

#include <sys/types.h>

#include <deque>
#include <string>
#include <vector>

#include "base/status.h"

namespace strata::cli::up {

struct ChildSpec {
  std::string name;               // "gateway", "node-0": log prefix and messages
  std::vector<std::string> args;  // arguments after the executable
  std::string health_host = "127.0.0.1";
  int health_port = 0;
  std::string health_path = "/health";  // ready when it answers 200
  // The gateway: ready only when its /ready reports this many healthy backends.
  int min_healthy_backends = 0;
  bool essential = false;  // its death stops everything at once (the gateway)
  bool needed = false;     // restarted, but when it stays down everything stops (a pipeline
                           // stage: the pipeline cannot serve without it)
};

struct SupervisorOptions {
  std::string exe = "/proc/self/exe";
  std::string log_dir;        // NAME.log files ("": none)
  int max_restarts = 3;       // per node, after which it stays down
  int stop_grace_ms = 10000;  // SIGTERM -> SIGKILL
  bool prefix_logs = true;    // children's lines on stdout as "NAME | line"
};

class Supervisor {
 public:
  explicit Supervisor(SupervisorOptions o);
  ~Supervisor();  // stops whatever still runs
  Supervisor(const Supervisor&) = delete;
  Supervisor& operator=(const Supervisor&) = delete;

  // Installs the SIGINT/SIGTERM/SIGCHLD handlers (call once, before Start).
  Status InstallSignalHandlers();
  Status Start(const ChildSpec& spec);
  // Streams logs until every child answers its health URL. Errors: a child exits (its name,
  // how, and the tail of its log), the timeout passes (the children not ready), or a stop
  // signal arrives.
  Status WaitHealthy(double timeout_s);
  // Streams logs and supervises until a stop signal (returns 0 after stopping everything) or
  // an essential child is lost for good (returns 1 after stopping everything).
  int Run();
  void StopAll();

  // GET http://host:port/path on loopback: the status code (0: no answer) and the body.
  static int HttpGet(const std::string& host, int port, const std::string& path, int timeout_ms,
                     std::string* body);
  const std::vector<pid_t> pids() const;

 private:
  struct Child {
    ChildSpec spec;
    pid_t pid = -1;
    int out_fd = -1;               // read end of its stdout+stderr
    int log_fd = -1;               // RUN_DIR/NAME.log
    std::string partial;           // an unfinished output line
    std::deque<std::string> tail;  // its last lines
    int restarts = 0;
    bool alive = false;
    bool ready = false;
  };

  Status Spawn(Child& c);
  // Reads output and signals for up to `wait_ms`; returns the stop signal seen (0: none).
  int Pump(int wait_ms);
  void Drain(Child& c);
  void Line(Child& c, const std::string& line);
  // Reaps exited children; for each, fills `died` with its index.
  void Reap(std::vector<size_t>* died);
  std::string TailText(const Child& c) const;
  void Say(const std::string& text);

  SupervisorOptions o_;
  std::vector<Child> children_;
  bool stopping_ = false;
};

// "exited with status 1", "exited with signal 9 (SIGKILL)".
std::string DescribeExit(int wait_status);

}  // namespace strata::cli::up
