// The demo model `strata up` serves without --model: synthesized deterministically on first
// use into CacheDir() (temp file + rename, so concurrent first runs are safe) and reused.
// Its weights are random: its text is meaningless (the file says so: strata.demo = true).
#pragma once

#include <string>

#include "base/status.h"

namespace strata::cli::up {

// The path of the demo model, synthesizing it first when absent or unreadable.
Result<std::string> EnsureDemoModel();
// Whether the GGUF file at `path` is a demo model (metadata strata.demo = true).
bool IsDemoModel(const std::string& path);

}  // namespace strata::cli::up
