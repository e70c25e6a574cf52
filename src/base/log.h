// Leveled logging to stderr, one line per event, for every component (node, gateway, stage).
// Level from STRATA_LOG (error|warn|info|debug), default warn.
// Format: JSON lines {"ts","level","component","node","request_id","msg", extra fields...} or
// human text. Default: STRATA_LOG_FORMAT (text|json) when set, else JSON when stderr is not a
// terminal and text when it is; `--log-format` of node and gateway overrides (docs/logging.md).
#pragma once

#include <string>
#include <vector>

#include "base/status.h"

namespace strata {

enum class LogLevel { kError = 0, kWarn = 1, kInfo = 2, kDebug = 3 };
enum class LogFormat { kText = 0, kJson = 1 };

void SetLogLevel(LogLevel level);
LogLevel GetLogLevel();
void SetLogFormat(LogFormat format);
LogFormat GetLogFormat();
// "text" or "json"; false for anything else.
bool ParseLogFormat(const std::string& name, LogFormat* out);
// Who logs: the component ("node", "gateway", "cli") and this process's node name, if any.
void SetLogComponent(const std::string& component);
void SetLogNode(const std::string& node);

// An extra field whose value is already JSON text: a number, true/false, or LogQuote("...").
struct LogField {
  std::string key, json;
};
std::string LogQuote(const std::string& s);  // a JSON string literal

// One line, without the trailing newline. ts_ms: milliseconds since the Unix epoch.
std::string FormatLogLine(LogFormat format, int64_t ts_ms, LogLevel level, const std::string& msg,
                          const std::string& request_id, const std::vector<LogField>& extra);

void LogMessage(LogLevel level, const std::string& message);
// Written whatever the level filter says (callers that have their own switch: the access log).
void LogEvent(LogLevel level, const std::string& message, const std::string& request_id,
              const std::vector<LogField>& extra = {});

}  // namespace strata

#define STRATA_LOG(level, ...)                                                \
  do {                                                                        \
    if (static_cast<int>(level) <= static_cast<int>(::strata::GetLogLevel())) \
      ::strata::LogMessage(level, ::strata::StrFormat(__VA_ARGS__));          \
  } while (0)

// The same, for a line that belongs to a request: its request id becomes a field.
#define STRATA_LOG_REQ(level, request_id, ...)                                       \
  do {                                                                               \
    if (static_cast<int>(level) <= static_cast<int>(::strata::GetLogLevel()))        \
      ::strata::LogEvent(level, ::strata::StrFormat(__VA_ARGS__), (request_id), {}); \
  } while (0)
