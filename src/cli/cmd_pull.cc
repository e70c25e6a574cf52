// strata pull: download a GGUF into the models directory; strata models: list that directory.
#include <cstdio>
#include <memory>
#include <nlohmann/json.hpp>

#include "base/progress.h"
#include "cli/commands.h"
#include "hub/pull.h"
#include "hub/ref.h"

namespace strata::cli {
namespace {

struct PullArgs {
  std::string ref, out;
  double connect_timeout = 30, idle_timeout = 60;
};

struct ModelsArgs {
  std::string dir;
  bool json = false;
};

int Pull(const PullArgs& a) {
  hub::Options o;
  o.models_dir = a.out;
  o.http.connect_timeout_s = a.connect_timeout;
  o.http.idle_timeout_s = a.idle_timeout;
  auto r = hub::Pull(a.ref, o);
  if (!r.ok()) return Fail(r.status().message());
  if (r->already_present) std::fprintf(stderr, "already present (delete it to pull again)\n");
  else
    std::fprintf(stderr, "%s, sha256 %s (%s)\n", HumanBytes(r->size).c_str(), r->sha256.c_str(),
                 r->verified ? "verified" : "not published by the source");
  std::printf("%s\n", r->path.c_str());
  return 0;
}

int Models(const ModelsArgs& a) {
  std::string dir = a.dir;
  if (dir.empty()) {
    auto d = hub::DefaultModelsDir();
    if (!d.ok()) return Fail(d.status().message());
    dir = d.value();
  }
  auto models = hub::ListModels(dir);
  if (!models.ok()) return Fail(models.status().message());
  if (a.json) {
    nlohmann::json j = nlohmann::json::array();
    for (const auto& m : models.value())
      j.push_back({{"name", m.name},
                   {"path", m.path},
                   {"size", m.size},
                   {"arch", m.arch},
                   {"quant", m.quant},
                   {"ref", m.ref},
                   {"sha256", m.sha256}});
    std::printf("%s\n", j.dump(2).c_str());
    return 0;
  }
  std::printf("models in %s\n", dir.c_str());
  if (models->empty()) {
    std::printf("(none: strata pull OWNER/REPO:QUANT to fetch one)\n");
    return 0;
  }
  std::printf("%-56s %10s %-7s %-8s %s\n", "NAME", "SIZE", "ARCH", "QUANT", "SOURCE");
  for (const auto& m : models.value())
    std::printf("%-56s %10s %-7s %-8s %s\n", m.name.c_str(), HumanBytes(m.size).c_str(),
                m.arch.c_str(), m.quant.c_str(), m.ref.empty() ? "-" : m.ref.c_str());
  return 0;
}

}  // namespace

Runner AddPullCommand(CLI::App* sub) {
  auto a = std::make_shared<PullArgs>();
  sub->add_option("ref", a->ref, "Model reference")->required();
  sub->add_option("--out,-o", a->out,
                  "Models directory (default: $STRATA_MODELS, $XDG_DATA_HOME/strata/models or "
                  "~/.local/share/strata/models)");
  sub->add_option("--connect-timeout", a->connect_timeout, "Seconds to connect (and TLS)")
      ->check(CLI::PositiveNumber);
  sub->add_option("--idle-timeout", a->idle_timeout,
                  "Seconds without any received byte before giving up (resumable)")
      ->check(CLI::PositiveNumber);
  return [a] { return Pull(*a); };
}

Runner AddModelsCommand(CLI::App* sub) {
  auto a = std::make_shared<ModelsArgs>();
  sub->add_option("--dir", a->dir, "Models directory (default as for pull)");
  sub->add_flag("--json", a->json, "Print JSON");
  return [a] { return Models(*a); };
}

Result<std::string> ResolveModelArg(const std::string& model) {
  if (model.empty()) return model;
  return hub::ResolveModel(model, hub::Options{});
}

}  // namespace strata::cli
