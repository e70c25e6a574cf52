#include "base/log.h"

#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <mutex>

namespace strata {
namespace {

LogLevel InitialLevel() {
  const char* env = std::getenv("STRATA_LOG");
  if (!env) return LogLevel::kWarn;
  if (!std::strcmp(env, "error")) return LogLevel::kError;
  if (!std::strcmp(env, "info")) return LogLevel::kInfo;
  if (!std::strcmp(env, "debug")) return LogLevel::kDebug;
  return LogLevel::kWarn;
}

LogFormat InitialFormat() {
  LogFormat f;
  const char* env = std::getenv("STRATA_LOG_FORMAT");
  if (env && ParseLogFormat(env, &f)) return f;
  return isatty(STDERR_FILENO) ? LogFormat::kText : LogFormat::kJson;
}

const char* const kLevelNames[] = {"error", "warn", "info", "debug"};

LogLevel g_level = InitialLevel();
LogFormat g_format = InitialFormat();
std::mutex g_mu;
std::string g_component = "strata";
std::string g_node;

std::string IsoTime(int64_t ts_ms) {
  const std::time_t secs = static_cast<std::time_t>(ts_ms / 1000);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[64];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
                tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                static_cast<int>(ts_ms % 1000));
  return buf;
}

int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

void Write(std::string line) {
  line += '\n';
  std::lock_guard<std::mutex> lock(g_mu);
  std::fwrite(line.data(), 1, line.size(), stderr);
  std::fflush(stderr);
}

}  // namespace

void SetLogLevel(LogLevel level) { g_level = level; }
LogLevel GetLogLevel() { return g_level; }
void SetLogFormat(LogFormat format) { g_format = format; }
LogFormat GetLogFormat() { return g_format; }

bool ParseLogFormat(const std::string& name, LogFormat* out) {
  if (name == "json") *out = LogFormat::kJson;
  else if (name == "text") *out = LogFormat::kText;
  else return false;
  return true;
}

void SetLogComponent(const std::string& component) {
  std::lock_guard<std::mutex> lock(g_mu);
  g_component = component;
}
void SetLogNode(const std::string& node) {
  std::lock_guard<std::mutex> lock(g_mu);
  g_node = node;
}

std::string LogQuote(const std::string& s) {
  std::string o = "\"";
  for (unsigned char c : s) {
    switch (c) {
      case '"': o += "\\\""; break;
      case '\\': o += "\\\\"; break;
      case '\n': o += "\\n"; break;
      case '\r': o += "\\r"; break;
      case '\t': o += "\\t"; break;
      default:
        if (c < 0x20) o += StrFormat("\\u%04x", c);
        else o += static_cast<char>(c);
    }
  }
  return o + "\"";
}

std::string FormatLogLine(LogFormat format, int64_t ts_ms, LogLevel level, const std::string& msg,
                          const std::string& request_id, const std::vector<LogField>& extra) {
  std::string component, node;
  {
    std::lock_guard<std::mutex> lock(g_mu);
    component = g_component;
    node = g_node;
  }
  const char* lv = kLevelNames[static_cast<int>(level)];
  if (format == LogFormat::kText) {
    std::string o =
        IsoTime(ts_ms) + " [" + component + (node.empty() ? "" : " " + node) + " " + lv + "]";
    if (!request_id.empty()) o += " [" + request_id + "]";
    o += " " + msg;
    for (const LogField& f : extra) o += " " + f.key + "=" + f.json;
    return o;
  }
  std::string o = "{\"ts\":" + LogQuote(IsoTime(ts_ms)) + ",\"level\":\"" + lv +
                  "\",\"component\":" + LogQuote(component);
  if (!node.empty()) o += ",\"node\":" + LogQuote(node);
  if (!request_id.empty()) o += ",\"request_id\":" + LogQuote(request_id);
  o += ",\"msg\":" + LogQuote(msg);
  for (const LogField& f : extra)
    o += "," + LogQuote(f.key) + ":" + (f.json.empty() ? "null" : f.json);
  return o + "}";
}

void LogMessage(LogLevel level, const std::string& message) {
  Write(FormatLogLine(g_format, NowMs(), level, message, "", {}));
}

void LogEvent(LogLevel level, const std::string& message, const std::string& request_id,
              const std::vector<LogField>& extra) {
  Write(FormatLogLine(g_format, NowMs(), level, message, request_id, extra));
}

}  // namespace strata
