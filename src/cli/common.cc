#include <cstdio>

#include "base/log.h"
#include "cli/commands.h"
#include "cli/log_setup.h"

namespace strata::cli {

int Fail(const std::string& message) {
  std::fprintf(stderr, "error: %s\n", message.c_str());
  return 1;
}

void AddLogFormatOption(CLI::App* sub, std::string* format) {
  sub->add_option("--log-format", *format,
                  "Log lines as json or text (default: $STRATA_LOG_FORMAT, else json unless "
                  "stderr is a terminal)")
      ->check(CLI::IsMember({"json", "text"}));
}

bool SetUpLogging(const std::string& format, const std::string& component, const std::string& node) {
  LogFormat f;
  if (!format.empty()) {
    if (!ParseLogFormat(format, &f)) {
      Fail("--log-format must be json or text");
      return false;
    }
    SetLogFormat(f);
  }
  SetLogComponent(component);
  SetLogNode(node);
  return true;
}

}  // namespace strata::cli
