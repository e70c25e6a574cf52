// Minimal leveled logging to stderr. Level from STRATA_LOG (error|warn|info|debug), default warn.
#pragma once

#include <string>

#include "base/status.h"

namespace strata {

enum class LogLevel { kError = 0, kWarn = 1, kInfo = 2, kDebug = 3 };

void SetLogLevel(LogLevel level);
LogLevel GetLogLevel();
void LogMessage(LogLevel level, const std::string& message);

}  // namespace strata

#define STRATA_LOG(level, ...)                                               \
  do {                                                                       \
    if (static_cast<int>(level) <= static_cast<int>(::strata::GetLogLevel())) \
      ::strata::LogMessage(level, ::strata::StrFormat(__VA_ARGS__));         \
  } while (0)
