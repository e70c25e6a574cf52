// Subcommands of the `strata` binary. Each registers its options on the CLI11 app and
// returns a runner producing the process exit code.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <utility>

#include <CLI/CLI.hpp>

#include "base/status.h"

namespace strata {
class Engine;
struct EngineOptions;
}  // namespace strata

namespace strata::cli {

using Runner = std::function<int()>;

Runner AddRunCommand(CLI::App& app);
Runner AddTokenizeCommand(CLI::App& app);
Runner AddInspectCommand(CLI::App& app);
Runner AddModelCommand(CLI::App& app);
Runner AddNodeCommand(CLI::App& app);
Runner AddBenchCommand(CLI::App& app);
Runner AddPerplexityCommand(CLI::App& app);
Runner AddQuantizeCommand(CLI::App& app);
Runner AddPlanCommand(CLI::App& app);
Runner AddGatewayCommand(CLI::App& app);
Runner AddUpCommand(CLI::App& app);
Runner AddPullCommand(CLI::App& app);
Runner AddModelsCommand(CLI::App& app);
Runner AddLoadtestCommand(CLI::App& app);
Runner AddConfigCommand(CLI::App& app);

// Prints "error: <message>" to stderr and returns the exit code 1.
int Fail(const std::string& message);

// --cache-type-k and --cache-type-v (f16, q8_0, q4_0; any case), of run, node, bench and plan.
// Returns the two options (for "was it given").
std::pair<CLI::Option*, CLI::Option*> AddKvCacheTypeOptions(CLI::App* sub, std::string* k,
                                                            std::string* v);
// --mmap of run, node, bench and perplexity (EngineOptions::mmap).
void AddMmapOption(CLI::App* sub, bool* mmap);
// Engine::Load of `eo` with the KV cache types named by --cache-type-k / -v (checked by
// AddKvCacheTypeOptions): run, bench and perplexity.
Result<std::unique_ptr<Engine>> LoadCliEngine(EngineOptions eo, const std::string& cache_type_k,
                                              const std::string& cache_type_v);
// --chat-template of run and node: a family of tokenizer/chat_template.h, checked.
void AddChatTemplateOption(CLI::App* sub, std::string* family, const std::string& help);

// --model,-m of run and perplexity (required): a GGUF file or a hub reference, pulled on first
// use (ResolveModelArg).
CLI::Option* AddModelOption(CLI::App* sub, std::string* model);
// --model of run and node: a local path as is, a reference (hub/ref.h) looked up in the models
// directory and pulled on first use.
Result<std::string> ResolveModelArg(const std::string& model);

}  // namespace strata::cli
