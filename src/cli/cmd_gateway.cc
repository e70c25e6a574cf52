// strata gateway: placeholder, being implemented.
#include "cli/commands.h"

namespace strata::cli {

Runner AddGatewayCommand(CLI::App& app) {
  app.add_subcommand("gateway", "Run the gateway: balance, health-check and fail over across nodes");
  return [] { return Fail("strata gateway: not implemented yet"); };
}

}  // namespace strata::cli
