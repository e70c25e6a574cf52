// strata: DeepSeek-R1 distill inference on CPU clusters. Dispatches to the subcommands.
#include <string>
#include <utility>
#include <vector>

#include "cli/commands.h"

int main(int argc, char** argv) {
  CLI::App app{"strata: serve DeepSeek-R1 distilled models (qwen2, llama) on CPU machines"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "strata 0.1.0");
  const std::vector<std::pair<std::string, strata::cli::Runner>> cmds = {
      {"run", strata::cli::AddRunCommand(app)},
      {"tokenize", strata::cli::AddTokenizeCommand(app)},
      {"inspect", strata::cli::AddInspectCommand(app)},
      {"model", strata::cli::AddModelCommand(app)},
      {"node", strata::cli::AddNodeCommand(app)},
      {"bench", strata::cli::AddBenchCommand(app)},
      {"perplexity", strata::cli::AddPerplexityCommand(app)},
      {"quantize", strata::cli::AddQuantizeCommand(app)},
      {"plan", strata::cli::AddPlanCommand(app)},
      {"gateway", strata::cli::AddGatewayCommand(app)},
      {"up", strata::cli::AddUpCommand(app)},
      {"pull", strata::cli::AddPullCommand(app)},
      {"models", strata::cli::AddModelsCommand(app)},
      {"loadtest", strata::cli::AddLoadtestCommand(app)},
      {"config", strata::cli::AddConfigCommand(app)},
  };
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  for (const auto& [name, run] : cmds)
    if (app.got_subcommand(name)) return run();
  return 1;
}
