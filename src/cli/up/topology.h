// What `strata up` starts on this machine: a generated topology (a gateway in front of N
// replicas, or of an N-stage pipeline split by the planner) written as cluster.yaml into a run
// directory with its secrets, or the local subset of an existing cluster.yaml.
#pragma once

#include <string>
#include <vector>

#include "base/status.h"
#include "cli/up/supervisor.h"

namespace strata::cli::up {

struct UpOptions {
  std::string mode = "replica";  // or "pipeline"
  int nodes = 2;
  std::string model_path;          // resolved GGUF file
  std::string host = "127.0.0.1";  // gateway listen address
  int port = 8000;                 // gateway port
  int parallel = 4, ctx = 4096;    // per node
  int threads = 0;                 // compute threads shared by the nodes (0: all cores)
  std::string run_dir;             // "": DefaultRunDir()
};

struct NodeInfo {
  std::string name;
  std::string host = "127.0.0.1";
  int port = 0;
  int stage_port = 0;
  std::string layers;  // "A-B" (pipeline), "" (whole model or planned by the node itself)
  std::string next;    // next stage's name
  int threads = 0;
};

struct Topology {
  std::string mode;  // "replica", "pipeline" or "config"
  std::string run_dir;
  std::string config_path;      // the cluster.yaml the children read
  std::string model_path;       // the model file it names
  std::vector<NodeInfo> nodes;  // the nodes started here
  std::string gateway_host;     // to reach it ("127.0.0.1" for a wildcard listen)
  std::string gateway_listen;   // as configured
  int gateway_port = 0;
  int backends = 0;                 // the gateway's backends (all must be healthy to be ready)
  std::vector<ChildSpec> children;  // nodes first (last stage first), then the gateway
};

// $XDG_CACHE_HOME/strata, else $HOME/.cache/strata.
std::string CacheDir();
// CacheDir()/up/PID, created 0700.
Result<std::string> MakeRunDir(const std::string& wanted);

// Writes RUN_DIR/cluster.yaml, RUN_DIR/cluster.secret and RUN_DIR/node.key (0600) and returns
// what to start. Threads: the gateway 1, each node threads / nodes (at least 1).
Result<Topology> GenerateTopology(const UpOptions& o);
// The nodes of `config_path` whose host is this machine (loopback, a wildcard, this host's
// name or one of its addresses) and the gateway. A node without `threads` gets
// threads / (local nodes).
Result<Topology> LocalTopology(const std::string& config_path, int threads);

// The compute threads of this machine (hardware_concurrency, at least 1).
int MachineThreads();

}  // namespace strata::cli::up
