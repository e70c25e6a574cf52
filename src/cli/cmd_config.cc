// strata config hosts --config cluster.yaml: the deployment view of a cluster description
// (hosts, ports, roles and the files a host needs), as JSON for deploy/ssh-deploy.sh.
#include <cstdio>

#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "cluster/config.h"

namespace strata::cli {
namespace {

// The files the config names (secrets, TLS), as written in it: relative paths are relative to
// the config file's directory. Values never appear, only file names.
nlohmann::json FilesOf(const cluster::ClusterConfig& c) {
  nlohmann::json files = nlohmann::json::array();
  for (const std::string* f :
       {&c.cluster.secret_file, &c.gateway.node_api_key_file, &c.gateway.cache.redis_password_file,
        &c.gateway.cache.hmac_key_file, &c.gateway.tls_cert, &c.gateway.tls_key}) {
    if (!f->empty()) files.push_back(*f);
  }
  return files;
}

nlohmann::json HostsJson(const cluster::ClusterConfig& c) {
  nlohmann::json nodes = nlohmann::json::array();
  for (const cluster::NodeSpec& n : c.nodes) {
    nodes.push_back({{"name", n.name},
                     {"host", n.host},
                     {"port", n.port},
                     {"stage_port", n.stage_port},
                     {"mode", c.ModeOf(n)},
                     {"next", n.next},
                     {"memory", n.memory}});
  }
  const cluster::GatewayConfig& g = c.gateway;
  nlohmann::json gw = {{"listen_host", g.listen_host},
                       {"listen_port", g.listen_port},
                       {"tls", !g.tls_cert.empty()},
                       {"tls_cert", g.tls_cert},
                       {"tls_key", g.tls_key},
                       {"admin_key", !g.admin_key.empty()},
                       {"backends", g.backends},
                       {"health_interval_ms", g.health.interval_ms},
                       {"healthy_threshold", g.health.healthy_threshold},
                       {"unhealthy_threshold", g.health.unhealthy_threshold}};
  return {{"model", {{"path", c.model.path}, {"name", c.model.name}}},
          {"nodes", nodes},
          {"gateway", gw},
          {"files", FilesOf(c)}};
}

}  // namespace

Runner AddConfigCommand(CLI::App* cmd) {
  cmd->require_subcommand(1);
  auto* hosts = cmd->add_subcommand(
      "hosts", "Print the hosts, ports, roles and needed files as JSON (for deploy scripts)");
  auto path = std::make_shared<std::string>();
  hosts->add_option("--config,-c", *path, "cluster description (cluster.yaml)")->required();
  return [path] {
    auto cfg = cluster::LoadClusterConfig(*path);
    if (!cfg.ok()) return Fail(cfg.status().message());
    std::printf("%s\n", HostsJson(cfg.value()).dump(2).c_str());
    return 0;
  };
}

}  // namespace strata::cli
