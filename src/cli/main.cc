// strata: DeepSeek-R1 distill inference on CPU clusters. Dispatches to the subcommands.
#include <string>
#include <utility>
#include <vector>

#include "cli/commands.h"

namespace strata::cli {
namespace {

// The subcommands, in the order --help lists them: name, description, and the function that
// registers the options and returns the runner.
struct Command {
  const char* name;
  const char* description;
  Runner (*add)(CLI::App* sub);
};
const Command kCommands[] = {
    {"run", "Generate text from a prompt", AddRunCommand},
    {"tokenize", "Print the token ids of a text as a JSON array", AddTokenizeCommand},
    {"inspect", "Show a GGUF file's metadata and tensor table", AddInspectCommand},
    {"model", "Model file tools", AddModelCommand},
    {"node", "Serve a model over HTTP (OpenAI-compatible API)", AddNodeCommand},
    {"bench",
     "measure prompt (ppP) and generation (tgN) speed as llama-bench, and/or memory read "
     "bandwidth",
     AddBenchCommand},
    {"perplexity", "Perplexity of a text file, computed and printed as llama-perplexity does",
     AddPerplexityCommand},
    {"quantize",
     "Quantize a GGUF model (F32/F16/BF16 -> Q8_0, Q4_0, Q4_K_M, Q5_K_M, Q6_K) with "
     "llama-quantize's per-tensor type mix",
     AddQuantizeCommand},
    {"plan", "Plan a pipeline: split a model's layers across nodes by free memory and speed",
     AddPlanCommand},
    {"gateway", "Run the gateway: balance, health-check and fail over across nodes",
     AddGatewayCommand},
    {"up",
     "Start a gateway and compute nodes on this machine (replicas or a pipeline) and supervise "
     "them until Ctrl-C",
     AddUpCommand},
    {"pull",
     "Download a GGUF model: hf://OWNER/REPO/FILE.gguf[@REV], OWNER/REPO[:QUANT] or an http(s) "
     "URL (HF_ENDPOINT and HF_TOKEN honoured)",
     AddPullCommand},
    {"models", "List the pulled models (name, size, architecture, quantization, source)",
     AddModelsCommand},
    {"loadtest", "Load-test an OpenAI-compatible server (docs/loadtest.md)", AddLoadtestCommand},
    {"config", "Inspect a cluster description (cluster.yaml)", AddConfigCommand},
};

}  // namespace
}  // namespace strata::cli

int main(int argc, char** argv) {
  CLI::App app{"strata: serve DeepSeek-R1 distilled models (qwen2, llama) on CPU machines"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "strata 0.1.0");
  std::vector<std::pair<CLI::App*, strata::cli::Runner>> cmds;
  for (const strata::cli::Command& c : strata::cli::kCommands) {
    CLI::App* sub = app.add_subcommand(c.name, c.description);
    cmds.emplace_back(sub, c.add(sub));
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  for (const auto& [sub, run] : cmds)
    if (app.got_subcommand(sub)) return run();
  return 1;
}
