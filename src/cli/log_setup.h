// --log-format of the server subcommands (node, gateway): docs/logging.md.
#pragma once

#include <string>

#include <CLI/CLI.hpp>

namespace strata::cli {

void AddLogFormatOption(CLI::App* sub, std::string* format);
// Applies --log-format (empty: keep STRATA_LOG_FORMAT / the terminal default) and names the
// component and node in every log line. False (after Fail's message) on a bad format.
bool SetUpLogging(const std::string& format, const std::string& component, const std::string& node);

}  // namespace strata::cli
