// Subcommands of the `strata` binary. Each registers its options on the CLI11 app and
// returns a runner producing the process exit code.
#pragma once

#include <functional>

#include <CLI/CLI.hpp>

namespace strata::cli {

using Runner = std::function<int()>;

Runner AddRunCommand(CLI::App& app);
Runner AddTokenizeCommand(CLI::App& app);
Runner AddInspectCommand(CLI::App& app);
Runner AddModelCommand(CLI::App& app);
Runner AddNodeCommand(CLI::App& app);
Runner AddBenchCommand(CLI::App& app);
Runner AddQuantizeCommand(CLI::App& app);
Runner AddPlanCommand(CLI::App& app);
Runner AddGatewayCommand(CLI::App& app);
Runner AddConfigCommand(CLI::App& app);

// Prints "error: <message>" to stderr and returns the exit code 1.
int Fail(const std::string& message);

}  // namespace strata::cli
