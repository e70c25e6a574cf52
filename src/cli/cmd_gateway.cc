// strata gateway --config cluster.yaml: the cluster's front door (docs/gateway.md).
#include <cstdio>

#include "cli/commands.h"
#include "cli/log_setup.h"
#include "cluster/config.h"
#include "gateway/gateway.h"

namespace strata::cli {

Runner AddGatewayCommand(CLI::App* cmd) {
  struct Opts {
    std::string config;
    std::string listen;
    bool check = false;
    std::string log_format;
  };
  auto o = std::make_shared<Opts>();
  cmd->add_option("--config,-c", o->config, "cluster description (cluster.yaml)")->required();
  cmd->add_option("--listen", o->listen, "override gateway.listen (host:port)");
  cmd->add_flag("--check", o->check, "validate the config, print the backends and exit");
  AddLogFormatOption(cmd, &o->log_format);
  return [o] {
    if (!SetUpLogging(o->log_format, "gateway", "")) return 1;
    auto cfg = cluster::LoadClusterConfig(o->config);
    if (!cfg.ok()) return Fail(cfg.status().message());
    cluster::ClusterConfig c = std::move(cfg).value();
    if (!o->listen.empty()) {
      const size_t colon = o->listen.rfind(':');
      int port = -1;
      if (colon != std::string::npos) port = std::atoi(o->listen.c_str() + colon + 1);
      if (colon == std::string::npos || port < 0 || port > 65535)
        return Fail("--listen must be host:port (got '" + o->listen + "')");
      if (colon > 0) c.gateway.listen_host = o->listen.substr(0, colon);
      c.gateway.listen_port = port;
    }
    if (o->check) {
      std::printf("%s: ok, %zu nodes, backends:", o->config.c_str(), c.nodes.size());
      for (const auto& b : c.gateway.backends) std::printf(" %s", b.c_str());
      std::printf("\n");
      return 0;
    }
    Status st = gateway::RunGateway(c);
    if (!st.ok()) return Fail(st.message());
    return 0;
  };
}

}  // namespace strata::cli
