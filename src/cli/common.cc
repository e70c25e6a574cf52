#include <cstdio>

#include "cli/commands.h"

namespace strata::cli {

int Fail(const std::string& message) {
  std::fprintf(stderr, "error: %s\n", message.c_str());
  return 1;
}

}  // namespace strata::cli
