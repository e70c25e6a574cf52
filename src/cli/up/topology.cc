#include "cli/up/topology.h"

#include <arpa/inet.h>
#include <ifaddrs.h>
#include <netdb.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <boost/asio/ip/tcp.hpp>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>
#include <thread>

#include "cluster/config.h"
#include "cluster/planner.h"

namespace strata::cli::up {
namespace {

namespace fs = std::filesystem;

// Replicas sharing this machine each hold the whole model: when there are several, a replica
// keeps it in the file mapping (--mmap), one set of page-cache pages for all, rather than a
// huge-page copy each. Stages hold disjoint layers and copy theirs.
bool SharesMapping(int local_replicas, bool is_replica) { return is_replica && local_replicas > 1; }

// A port nobody listens on now (bound and released; the child binds it moments later).
Result<int> FreePort() {
  try {
    boost::asio::io_context ioc;
    boost::asio::ip::tcp::acceptor a(
        ioc, boost::asio::ip::tcp::endpoint(boost::asio::ip::make_address("127.0.0.1"), 0));
    return static_cast<int>(a.local_endpoint().port());
  } catch (const std::exception& e) {
    return Errorf("no free port: %s", e.what());
  }
}

Status WriteFile0600(const std::string& path, const std::string& text) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
    if (!f) return Errorf("cannot write '%s'", tmp.c_str());
    f << text;
    if (!f) return Errorf("cannot write '%s'", tmp.c_str());
  }
  if (chmod(tmp.c_str(), 0600) != 0 || rename(tmp.c_str(), path.c_str()) != 0)
    return Errorf("cannot write '%s': %s", path.c_str(), std::strerror(errno));
  return Status::Ok();
}

// 32 random bytes as 64 hex digits.
Result<std::string> RandomSecret() {
  std::ifstream r("/dev/urandom", std::ios::binary);
  unsigned char b[32];
  if (!r.read(reinterpret_cast<char*>(b), sizeof b))
    return Status::Error("cannot read /dev/urandom");
  static const char* hex = "0123456789abcdef";
  std::string s;
  for (unsigned char c : b) {
    s += hex[c >> 4];
    s += hex[c & 15];
  }
  return s;
}

// Where to probe a server listening on `host`: a wildcard or a name -> loopback.
std::string ProbeHost(const std::string& host) {
  boost::system::error_code ec;
  const auto addr = boost::asio::ip::make_address(host, ec);
  if (ec || addr.is_unspecified()) return "127.0.0.1";
  return host;
}

std::set<std::string> LocalNames() {
  std::set<std::string> names = {"localhost", "127.0.0.1", "::1", "0.0.0.0", "::", ""};
  char hn[256] = {};
  if (gethostname(hn, sizeof hn - 1) == 0) {
    names.insert(hn);
    const char* dot = std::strchr(hn, '.');
    if (dot) names.insert(std::string(hn, static_cast<size_t>(dot - hn)));
  }
  ifaddrs* ifs = nullptr;
  if (getifaddrs(&ifs) == 0) {
    for (ifaddrs* i = ifs; i; i = i->ifa_next) {
      if (!i->ifa_addr) continue;
      char buf[INET6_ADDRSTRLEN] = {};
      if (i->ifa_addr->sa_family == AF_INET)
        inet_ntop(AF_INET, &reinterpret_cast<sockaddr_in*>(i->ifa_addr)->sin_addr, buf, sizeof buf);
      else if (i->ifa_addr->sa_family == AF_INET6)
        inet_ntop(AF_INET6, &reinterpret_cast<sockaddr_in6*>(i->ifa_addr)->sin6_addr, buf,
                  sizeof buf);
      if (buf[0]) names.insert(buf);
    }
    freeifaddrs(ifs);
  }
  return names;
}

bool IsLocalHost(const std::string& host, const std::set<std::string>& names) {
  return names.count(host) > 0 || host.rfind("127.", 0) == 0;
}

std::string Quote(const std::string& s) {  // a YAML double-quoted scalar
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  return out + "\"";
}

// The planner's split of the model over `n` equal nodes sharing this machine's memory.
Result<std::vector<std::string>> PlanLayers(const UpOptions& o, int node_threads) {
  STRATA_ASSIGN_OR_RETURN(auto mem, cluster::ModelMemoryFromGguf(o.model_path));
  if (mem.n_layers < o.nodes)
    return Errorf("pipeline mode: the model has %d layers, fewer than --nodes %d", mem.n_layers,
                  o.nodes);
  STRATA_ASSIGN_OR_RETURN(uint64_t free_mem, cluster::LocalFreeMemory());
  std::vector<cluster::PlanNode> pn;
  pn.reserve(static_cast<size_t>(o.nodes));
  for (int i = 0; i < o.nodes; ++i)
    pn.push_back({"node-" + std::to_string(i), free_mem / static_cast<uint64_t>(o.nodes), 1.0});
  cluster::PlanOptions po;
  po.n_ctx = o.ctx;
  po.n_parallel = o.parallel;
  po.n_threads = node_threads;
  auto plan = cluster::PlanPipeline(mem, pn, po);
  if (!plan.ok()) return plan.status().With("pipeline plan");
  std::vector<std::string> out;
  for (const cluster::StagePlan& s : plan.value().stages)
    out.push_back(std::to_string(s.first) + "-" + std::to_string(s.last - 1));
  return out;
}

// The gateway of topology `t`: essential, healthy once GET /ready answers 200.
ChildSpec GatewayChild(const Topology& t) {
  ChildSpec g;
  g.name = "gateway";
  g.args = {"gateway", "--config", t.config_path};
  g.health_host = t.gateway_host;
  g.health_port = t.gateway_port;
  g.health_path = "/ready";
  g.essential = true;
  return g;
}

}  // namespace

int MachineThreads() { return std::max(1u, std::thread::hardware_concurrency()); }

std::string CacheDir() {
  const char* xdg = std::getenv("XDG_CACHE_HOME");
  if (xdg && *xdg == '/') return std::string(xdg) + "/strata";
  const char* home = std::getenv("HOME");
  return std::string(home && *home ? home : "/tmp") + "/.cache/strata";
}

Result<std::string> MakeRunDir(const std::string& wanted) {
  const std::string dir = wanted.empty() ? CacheDir() + "/up/" + std::to_string(getpid()) : wanted;
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) return Errorf("cannot create '%s': %s", dir.c_str(), ec.message().c_str());
  chmod(dir.c_str(), 0700);
  return fs::absolute(dir).string();
}

Result<Topology> GenerateTopology(const UpOptions& o) {
  const bool pipeline = o.mode == "pipeline";
  if (o.nodes < 1) return Status::Error("--nodes must be at least 1");
  if (pipeline && o.nodes < 2) return Status::Error("pipeline mode needs --nodes 2 or more");
  Topology t;
  t.mode = o.mode;
  STRATA_ASSIGN_OR_RETURN(t.run_dir, MakeRunDir(o.run_dir));
  const int total = o.threads > 0 ? o.threads : MachineThreads();
  const int per_node = std::max(1, total / o.nodes);
  std::vector<std::string> layers;
  if (pipeline) {
    STRATA_ASSIGN_OR_RETURN(layers, PlanLayers(o, per_node));
  }
  for (int i = 0; i < o.nodes; ++i) {
    NodeInfo n;
    n.name = "node-" + std::to_string(i);
    STRATA_ASSIGN_OR_RETURN(n.port, FreePort());
    if (pipeline) {
      n.layers = layers[static_cast<size_t>(i)];
      if (i > 0) {
        STRATA_ASSIGN_OR_RETURN(n.stage_port, FreePort());
      }
      if (i + 1 < o.nodes) n.next = "node-" + std::to_string(i + 1);
    }
    n.threads = per_node;
    t.nodes.push_back(n);
  }
  t.gateway_port = o.port;
  t.gateway_listen = o.host + ":" + std::to_string(o.port);
  t.gateway_host = ProbeHost(o.host);
  t.backends = pipeline ? 1 : o.nodes;

  STRATA_ASSIGN_OR_RETURN(std::string secret, RandomSecret());
  STRATA_ASSIGN_OR_RETURN(std::string node_key, RandomSecret());
  STRATA_RETURN_IF_ERROR(WriteFile0600(t.run_dir + "/cluster.secret", secret + "\n"));
  STRATA_RETURN_IF_ERROR(WriteFile0600(t.run_dir + "/node.key", node_key + "\n"));
  std::string y = "# Written by `strata up` (" + o.mode + ", " + std::to_string(o.nodes) +
                  " nodes). Start the same cluster again with: strata up --config " + t.run_dir +
                  "/cluster.yaml\n";
  y += "model:\n  path: " + Quote(fs::absolute(o.model_path).string()) + "\n";
  y += "cluster:\n  secret_file: cluster.secret\n";
  y += "nodes:\n";
  for (const NodeInfo& n : t.nodes) {
    y +=
        "  - name: " + n.name + "\n    host: 127.0.0.1\n    port: " + std::to_string(n.port) + "\n";
    if (n.stage_port) y += "    stage_port: " + std::to_string(n.stage_port) + "\n";
    if (!n.layers.empty()) y += "    layers: " + Quote(n.layers) + "\n";
    if (!n.next.empty()) y += "    next: " + n.next + "\n";
    y += "    threads: " + std::to_string(n.threads) +
         "\n    parallel: " + std::to_string(o.parallel) + "\n    ctx: " + std::to_string(o.ctx) +
         "\n";
  }
  y += "gateway:\n  listen: " + Quote(t.gateway_listen) + "\n  threads: 1\n";
  y += "  node_api_key_file: node.key\n";
  y += "  health:\n    interval_ms: 500\n";
  t.config_path = t.run_dir + "/cluster.yaml";
  t.model_path = fs::absolute(o.model_path).string();
  STRATA_RETURN_IF_ERROR(WriteFile0600(t.config_path, y));
  // Validate what we wrote with the parser every child uses.
  auto parsed = cluster::LoadClusterConfig(t.config_path);
  if (!parsed.ok()) return parsed.status().With("the generated cluster.yaml");

  for (int i = o.nodes - 1; i >= 0; --i) {  // the last stage first: its upstream connects to it
    const NodeInfo& n = t.nodes[static_cast<size_t>(i)];
    ChildSpec c;
    c.name = n.name;
    c.args = {"node", "--config",       t.config_path,          "--name",
              n.name, "--api-key-file", t.run_dir + "/node.key"};
    if (SharesMapping(pipeline ? 0 : o.nodes, !pipeline)) c.args.emplace_back("--mmap");
    c.health_port = n.port;
    c.needed = pipeline;
    t.children.push_back(c);
  }
  t.children.push_back(GatewayChild(t));
  t.children.back().min_healthy_backends = t.backends;
  return t;
}

Result<Topology> LocalTopology(const std::string& config_path, int threads) {
  STRATA_ASSIGN_OR_RETURN(cluster::ClusterConfig c, cluster::LoadClusterConfig(config_path));
  Topology t;
  t.mode = "config";
  t.config_path = fs::absolute(config_path).string();
  t.run_dir = fs::path(t.config_path).parent_path().string();
  fs::path model(c.model.path);
  if (model.is_relative()) model = fs::path(t.run_dir) / model;  // as `strata node` reads it
  t.model_path = model.string();
  const std::set<std::string> names = LocalNames();
  std::vector<const cluster::NodeSpec*> local;
  for (const cluster::NodeSpec& n : c.nodes)
    if (IsLocalHost(n.host, names)) local.push_back(&n);
  const int total = threads > 0 ? threads : MachineThreads();
  const int per_node = std::max(1, total / std::max<int>(1, static_cast<int>(local.size())));
  std::reverse(local.begin(), local.end());  // in reverse: later stages usually come last
  const auto local_replicas = std::count_if(
      local.begin(), local.end(), [&](const auto* n) { return c.ModeOf(*n) == "replica"; });
  for (const cluster::NodeSpec* np : local) {
    const cluster::NodeSpec& n = *np;
    const bool fixed_layers = !n.layers_auto && n.layer_begin >= 0;
    NodeInfo info{.name = n.name,
                  .host = n.host,
                  .port = n.port,
                  .stage_port = n.stage_port,
                  .layers = fixed_layers
                                ? std::to_string(n.layer_begin) + "-" + std::to_string(n.layer_end)
                                : std::string(),
                  .next = n.next,
                  .threads = n.threads > 0 ? n.threads : per_node};
    ChildSpec cs;
    cs.name = n.name;
    cs.args = {"node", "--config", t.config_path, "--name", n.name};
    if (n.threads == 0) {
      cs.args.emplace_back("--threads");
      cs.args.push_back(std::to_string(per_node));
    }
    if (SharesMapping(static_cast<int>(local_replicas), c.ModeOf(n) == "replica"))
      cs.args.emplace_back("--mmap");
    cs.health_host = ProbeHost(n.host);
    cs.health_port = n.port;
    cs.needed = c.ModeOf(n) != "replica";
    t.children.push_back(cs);
    t.nodes.insert(t.nodes.begin(), info);
  }
  t.gateway_port = c.gateway.listen_port;
  t.gateway_listen = c.gateway.listen_host + ":" + std::to_string(c.gateway.listen_port);
  t.gateway_host = ProbeHost(c.gateway.listen_host);
  t.backends = static_cast<int>(c.gateway.backends.size());
  t.children.push_back(GatewayChild(t));
  return t;
}

}  // namespace strata::cli::up
