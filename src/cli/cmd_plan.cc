// strata plan: placeholder, being implemented.
#include "cli/commands.h"

namespace strata::cli {

Runner AddPlanCommand(CLI::App& app) {
  app.add_subcommand("plan", "Plan a pipeline: split a model's layers across nodes");
  return [] { return Fail("strata plan: not implemented yet"); };
}

}  // namespace strata::cli
