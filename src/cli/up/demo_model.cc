#include "cli/up/demo_model.h"

#include <unistd.h>

#include <cstdio>
#include <filesystem>

#include "cli/up/topology.h"
#include "gguf/gguf.h"
#include "model/synth.h"

namespace strata::cli::up {

bool IsDemoModel(const std::string& path) {
  auto f = gguf::File::Open(path);
  if (!f.ok()) return false;
  auto demo = f.value()->GetBool(kDemoMetadataKey);
  return demo.ok() && demo.value();
}

Result<std::string> EnsureDemoModel() {
  namespace fs = std::filesystem;
  const std::string dir = CacheDir();
  // The name changes whenever DemoSynthOptions() does (a new file, not a stale one).
  const std::string path = dir + "/demo-v1-qwen2-8x256-q8_0.gguf";
  if (IsDemoModel(path)) return path;
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) return Errorf("cannot create '%s': %s", dir.c_str(), ec.message().c_str());
  std::fprintf(stderr, "strata up: synthesizing the demo model (first run only) into %s\n",
               path.c_str());
  const std::string tmp = path + "." + std::to_string(getpid()) + ".partial";
  SynthOptions o = DemoSynthOptions();
  Status st = SynthesizeModel(o, tmp);
  if (!st.ok()) {
    fs::remove(tmp, ec);
    return st.With("synthesizing the demo model");
  }
  fs::rename(tmp, path, ec);
  if (ec) return Errorf("cannot rename '%s': %s", tmp.c_str(), ec.message().c_str());
  return path;
}

}  // namespace strata::cli::up
