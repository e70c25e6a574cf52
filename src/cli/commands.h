// Subcommands of the `strata` binary (main.cc lists them with their descriptions). Each
// registers its options on its CLI11 subcommand and returns a runner producing the process exit
// code.
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

Runner AddRunCommand(CLI::App* sub);
Runner AddTokenizeCommand(CLI::App* sub);
Runner AddInspectCommand(CLI::App* sub);
Runner AddModelCommand(CLI::App* sub);
Runner AddNodeCommand(CLI::App* sub);
Runner AddBenchCommand(CLI::App* sub);
Runner AddPerplexityCommand(CLI::App* sub);
Runner AddQuantizeCommand(CLI::App* sub);
Runner AddPlanCommand(CLI::App* sub);
Runner AddGatewayCommand(CLI::App* sub);
Runner AddUpCommand(CLI::App* sub);
Runner AddPullCommand(CLI::App* sub);
Runner AddModelsCommand(CLI::App* sub);
Runner AddLoadtestCommand(CLI::App* sub);
Runner AddConfigCommand(CLI::App* sub);

// An option whose value must lie in [min, max], its default shown in --help.
template <class T, class Bound>
CLI::Option* AddRangeOption(CLI::App* sub, const std::string& flags, T& value,
                            const std::string& help, Bound min, Bound max) {
  return sub->add_option(flags, value, help)->check(CLI::Range(min, max))->capture_default_str();
}

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
