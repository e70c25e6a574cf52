// `strata pull` and `--model REF`: fetch a GGUF into the models directory (resumable,
// SHA-256 verified against the hub, validated as a GGUF of a supported architecture, renamed
// into place atomically), find pulled models again, and list them.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "base/status.h"
#include "hub/http_client.h"

namespace strata::hub {

struct Options {
  std::string models_dir;  // empty: DefaultModelsDir()
  HttpOptions http;
};

struct PullResult {
  std::string path;  // the installed file
  std::string sha256;
  uint64_t size = 0;
  bool already_present = false;
  bool verified = false;  // the SHA-256 matched a published one
};

// Pulls a reference (see ref.h) into the models directory; a file already there is kept.
Result<PullResult> Pull(const std::string& ref, const Options& options);

// For `--model`: a local path is returned as is; a reference is looked up in the models
// directory and pulled on first use. Returns the local file path.
Result<std::string> ResolveModel(const std::string& ref_or_path, const Options& options);

struct LocalModel {
  std::string name;  // path relative to the models directory
  std::string path;
  uint64_t size = 0;
  std::string arch;   // general.architecture ("?" when unreadable)
  std::string quant;  // the file name's tag, else the most common weight type
  std::string ref;    // the reference it was pulled from (empty when not pulled)
  std::string sha256;
};

// The .gguf files under `dir` (recursively), sorted by name.
Result<std::vector<LocalModel>> ListModels(const std::string& dir);

// Checks that `path` is a GGUF this build can serve (parses, supported architecture).
Status ValidateGguf(const std::string& path);

}  // namespace strata::hub
