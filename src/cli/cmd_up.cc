// strata up: the whole topology on this machine in one command — a gateway in front of N
// replicas or of an N-stage layer pipeline (or the local part of a cluster.yaml) — supervised
// until Ctrl-C. Without --model it serves the demo model (random weights). docs/up.md.
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "cli/commands.h"
#include "cli/up/demo_model.h"
#include "cli/up/supervisor.h"
#include "cli/up/topology.h"

namespace strata::cli {
namespace {

struct UpArgs {
  up::UpOptions o;
  std::string model, config;
  double timeout_s = 300;
  bool no_logs = false;
  CLI::Option *mode = nullptr, *nodes = nullptr, *model_opt = nullptr;
};

struct ResolvedModel {
  std::string path;
  bool demo = false;
};

// --model -> a local GGUF file: "" is the demo model (synthesized on first use); a path is
// used as it is; a hub reference (OWNER/REPO:QUANT, hf://..., a URL) is pulled on first use,
// once, in this process, before any node starts.
Result<ResolvedModel> ResolveUpModel(const std::string& arg) {
  if (arg.empty()) {
    STRATA_ASSIGN_OR_RETURN(std::string path, up::EnsureDemoModel());
    return ResolvedModel{path, true};
  }
  STRATA_ASSIGN_OR_RETURN(std::string path, ResolveModelArg(arg));
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec))
    return Errorf("--model '%s': no such file (a GGUF model file)", path.c_str());
  return ResolvedModel{std::filesystem::absolute(path).string(), up::IsDemoModel(path)};
}

constexpr const char* kPrompt = "Why is the sky blue?";

void PrintSnippets(const std::string& url, const std::string& model) {
  std::printf(
      "\n  curl:\n"
      "    curl %s/v1/chat/completions -H 'Content-Type: application/json' \\\n"
      "      -d '{\"model\": \"%s\", \"max_tokens\": 64, \"messages\": "
      "[{\"role\": \"user\", \"content\": \"%s\"}]}'\n",
      url.c_str(), model.c_str(), kPrompt);
  std::printf(
      "\n  Python (pip install openai):\n"
      "    from openai import OpenAI\n"
      "    client = OpenAI(base_url=\"%s/v1\", api_key=\"none\")\n"
      "    r = client.chat.completions.create(model=\"%s\", max_tokens=64,\n"
      "        messages=[{\"role\": \"user\", \"content\": \"%s\"}])\n"
      "    print(r.choices[0].message.content)\n",
      url.c_str(), model.c_str(), kPrompt);
  std::printf(
      "\n  JavaScript (npm install openai):\n"
      "    import OpenAI from \"openai\";\n"
      "    const client = new OpenAI({ baseURL: \"%s/v1\", apiKey: \"none\" });\n"
      "    const r = await client.chat.completions.create({ model: \"%s\", max_tokens: 64,\n"
      "      messages: [{ role: \"user\", content: \"%s\" }] });\n"
      "    console.log(r.choices[0].message.content);\n",
      url.c_str(), model.c_str(), kPrompt);
}

// The banner once everything answers: URL, nodes and their layers, snippets, how to stop.
void PrintBanner(const up::Topology& t, bool demo, const std::vector<pid_t>& pids) {
  const std::string url = "http://" + t.gateway_host + ":" + std::to_string(t.gateway_port);
  std::string model = "default";
  std::printf("\n==== strata up: ready ");
  if (t.mode == "replica")
    std::printf("(a gateway in front of %zu replicas) ====\n", t.nodes.size());
  else if (t.mode == "pipeline")
    std::printf("(a gateway in front of a %zu-stage pipeline) ====\n", t.nodes.size());
  else std::printf("(the local part of %s) ====\n", t.config_path.c_str());
  if (demo)
    std::printf(
        "\n  WARNING: this is the DEMO model. Its weights are RANDOM, so the text it writes "
        "is MEANINGLESS.\n  For real answers: strata pull "
        "bartowski/DeepSeek-R1-Distill-Qwen-1.5B-GGUF:Q4_K_M, then strata up --model FILE\n");
  std::printf("\n  gateway   %-28s OpenAI API: /v1/chat/completions /v1/completions /v1/models\n",
              url.c_str());
  for (const up::NodeInfo& n : t.nodes) {
    std::string body, layers = n.layers.empty() ? "all layers" : "layers " + n.layers;
    const int code = up::Supervisor::HttpGet(n.host == "0.0.0.0" ? "127.0.0.1" : n.host, n.port,
                                             "/health", 1000, &body);
    const auto j = nlohmann::json::parse(body, nullptr, false);
    if (code == 200 && j.is_object()) {
      if (j.contains("first_layer"))
        layers = "layers " + std::to_string(j.value("first_layer", 0)) + "-" +
                 std::to_string(j.value("last_layer", 0));
      else if (j.contains("layers"))
        layers = "all " + std::to_string(j.value("layers", 0)) + " layers";
      if (j.value("model", std::string()).size()) model = j.value("model", std::string());
    }
    std::printf("  %-9s http://127.0.0.1:%-12d %-16s threads %d\n", n.name.c_str(), n.port,
                layers.c_str(), n.threads);
  }
  std::printf("  run dir   %s (cluster.yaml, secrets, NAME.log)\n", t.run_dir.c_str());
  PrintSnippets(url, model);
  std::printf("\n  Stop: Ctrl-C here (or kill -TERM %d) stops the gateway and every node.\n",
              static_cast<int>(getpid()));
  std::string pid_list;
  for (pid_t p : pids) pid_list += " " + std::to_string(p);
  std::printf("  Children (pids):%s\n", pid_list.c_str());
  if (demo) std::printf("\n  (demo model: random weights, meaningless text)\n");
  std::printf("====\n\n");
  std::fflush(stdout);
}

int RunUp(UpArgs& a) {
  up::Topology t;
  bool demo = false;
  if (!a.config.empty()) {
    if ((a.mode && a.mode->count()) || (a.nodes && a.nodes->count()) ||
        (a.model_opt && a.model_opt->count()))
      return Fail(
          "--config takes the model and the nodes from the file: drop --mode, --nodes "
          "and --model");
    auto topo = up::LocalTopology(a.config, a.o.threads);
    if (!topo.ok()) return Fail(topo.status().message());
    t = std::move(topo).value();
    demo = up::IsDemoModel(t.model_path);
    if (t.nodes.empty())
      std::fprintf(stderr,
                   "strata up: no node of %s is on this machine: starting the gateway "
                   "only\n",
                   a.config.c_str());
  } else {
    auto m = ResolveUpModel(a.model);
    if (!m.ok()) return Fail(m.status().message());
    demo = m.value().demo;
    a.o.model_path = m.value().path;
    auto topo = up::GenerateTopology(a.o);
    if (!topo.ok()) return Fail(topo.status().message());
    t = std::move(topo).value();
  }
  if (demo)
    std::fprintf(stderr,
                 "strata up: DEMO model %s: its weights are random, so its text is "
                 "meaningless\n",
                 t.model_path.c_str());
  up::SupervisorOptions so;
  so.log_dir = t.run_dir;
  so.prefix_logs = !a.no_logs;
  up::Supervisor sup(so);
  if (Status st = sup.InstallSignalHandlers(); !st.ok()) return Fail(st.message());
  std::printf("%-8s | starting %zu processes (config %s)\n", "up", t.children.size(),
              t.config_path.c_str());
  for (const up::ChildSpec& c : t.children) {
    if (Status st = sup.Start(c); !st.ok()) {
      sup.StopAll();
      return Fail("starting " + c.name + ": " + st.message());
    }
  }
  if (Status st = sup.WaitHealthy(a.timeout_s); !st.ok()) {
    sup.StopAll();
    return Fail(st.message());
  }
  PrintBanner(t, demo, sup.pids());
  return sup.Run();
}

}  // namespace

Runner AddUpCommand(CLI::App* sub) {
  auto a = std::make_shared<UpArgs>();
  a->mode = sub->add_option("--mode", a->o.mode,
                            "replica: N whole-model nodes; pipeline: the "
                            "layers split over N stages by the planner")
                ->check(CLI::IsMember({"replica", "pipeline"}))
                ->capture_default_str();
  a->nodes = AddRangeOption(sub, "--nodes,-n", a->o.nodes, "Compute nodes", 1, 64);
  a->model_opt = sub->add_option("--model,-m", a->model,
                                 "GGUF model file (default: the demo model, random weights)");
  AddRangeOption(sub, "--port,-p", a->o.port, "Gateway port", 1, 65535);
  sub->add_option("--host", a->o.host, "Gateway listen address (0.0.0.0: every interface)")
      ->capture_default_str();
  sub->add_option("--config,-c", a->config,
                  "cluster.yaml: start the nodes of the file that are on this machine, and the "
                  "gateway");
  sub->add_option("--threads,-t", a->o.threads,
                  "Compute threads shared by the nodes (0: all cores)")
      ->check(CLI::Range(0, 1024));
  AddRangeOption(sub, "--parallel", a->o.parallel, "Sequence slots per node", 1, 256);
  AddRangeOption(sub, "--ctx", a->o.ctx, "Context size per slot", 8, 1 << 24);
  sub->add_option("--run-dir", a->o.run_dir,
                  "Where cluster.yaml, the secrets and the logs go (default: "
                  "$XDG_CACHE_HOME/strata/up/PID)");
  AddRangeOption(sub, "--timeout", a->timeout_s, "Seconds to wait for every process to be ready",
                 1.0, 86400.0);
  sub->add_flag("--no-logs", a->no_logs,
                "Do not stream the processes' output (it still goes to RUN_DIR/NAME.log)");
  return [a] { return RunUp(*a); };
}

}  // namespace strata::cli
