// strata plan: split a model's layers across pipeline nodes by free memory and speed, and
// print the plan with the memory each node needs.
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "cli/commands.h"
#include "cluster/planner.h"
#include "cluster/speed_probe.h"
#include "model/kv_cache.h"

namespace strata::cli {
namespace {

struct PlanArgs {
  std::string model;
  std::vector<std::string> nodes;
  int ctx = 4096;
  int parallel = 1;
  int batch = 512;
  std::string cache_type_k = "f16", cache_type_v = "f16";
  std::string overhead = "60MiB";
  bool json = false;
};

double MiB(uint64_t b) { return static_cast<double>(b) / static_cast<double>(cluster::kMiB); }

// KV positions (slots x context) every stage of the plan can hold: the smallest stage's.
uint64_t PipelineKvFit(const cluster::ModelMemory& m, const cluster::Plan& plan,
                       const cluster::PlanOptions& opts) {
  uint64_t fit = UINT64_MAX;
  for (const cluster::StagePlan& s : plan.stages)
    fit = std::min(fit, cluster::KvTokensThatFit(m, s.first, s.last, s.free_memory_bytes, opts));
  return plan.stages.empty() ? 0 : fit;
}

int Plan(const PlanArgs& a) {
  auto mem = cluster::ModelMemoryFromGguf(a.model);
  if (!mem.ok()) return Fail(mem.status().message());
  const cluster::ModelMemory& m = mem.value();

  cluster::PlanOptions opts;
  opts.n_ctx = a.ctx;
  opts.n_parallel = a.parallel;
  opts.n_batch = a.batch;
  for (auto [name, out] : {std::pair{&a.cache_type_k, &opts.cache_type_k},
                           std::pair{&a.cache_type_v, &opts.cache_type_v}}) {
    auto t = ParseKvType(*name);
    if (!t.ok()) return Fail(t.status().message());
    *out = t.value();
  }
  const std::optional<int64_t> overhead = cluster::ParseByteSize(a.overhead);
  if (!overhead || *overhead < 0) return Fail("--overhead: invalid size '" + a.overhead + "'");
  opts.process_overhead_bytes = static_cast<uint64_t>(*overhead);

  std::vector<cluster::PlanNode> nodes;
  double local_speed = 0;  // measured once, shared by every "local" node
  for (const std::string& text : a.nodes) {
    auto p = cluster::ParsePlanNode(text);
    if (!p.ok()) return Fail(p.status().message());
    cluster::PlanNode spec = p.value().spec;
    if (p.value().is_local) {
      auto free = cluster::LocalFreeMemory();
      if (!free.ok()) return Fail(free.status().message());
      spec.free_memory_bytes = free.value();
      if (local_speed == 0) local_speed = cluster::MeasureNodeSpeed();
      spec.speed = local_speed;
    }
    nodes.push_back(spec);
  }

  auto plan_r = cluster::PlanPipeline(m, nodes, opts);
  if (!plan_r.ok()) return Fail(plan_r.status().message());
  const cluster::Plan& plan = plan_r.value();

  if (a.json) {
    nlohmann::json j;
    j["model"] = {{"path", a.model},
                  {"name", m.name},
                  {"arch", m.arch},
                  {"n_layers", m.n_layers},
                  {"tied_output", m.tied_output},
                  {"tensor_bytes", m.total_tensor_bytes}};
    j["options"] = {{"ctx", opts.n_ctx},
                    {"parallel", opts.n_parallel},
                    {"batch", opts.n_batch},
                    {"overhead_bytes", opts.process_overhead_bytes},
                    {"cache_type_k", DTypeName(opts.cache_type_k)},
                    {"cache_type_v", DTypeName(opts.cache_type_v)}};
    const uint64_t fit = PipelineKvFit(m, plan, opts);
    j["kv_fit"] = {{"tokens", fit},
                   {"slots_at_ctx", fit / static_cast<uint64_t>(opts.n_ctx)},
                   {"ctx_at_parallel", fit / static_cast<uint64_t>(opts.n_parallel)}};
    for (const cluster::StagePlan& s : plan.stages) {
      j["stages"].push_back({{"node", s.node},
                             {"first", s.first},
                             {"last", s.last},
                             {"layers", cluster::LayerRangeText(s.first, s.last)},
                             {"weights_bytes", s.memory.weights},
                             {"kv_bytes", s.memory.kv},
                             {"scratch_bytes", s.memory.scratch},
                             {"overhead_bytes", s.memory.overhead},
                             {"total_bytes", s.memory.total()},
                             {"free_bytes", s.free_memory_bytes},
                             {"speed", s.speed},
                             {"kv_fit_tokens", cluster::KvTokensThatFit(m, s.first, s.last,
                                                                        s.free_memory_bytes, opts)},
                             {"time_share", s.time_share}});
    }
    std::printf("%s\n", j.dump(1).c_str());
    return 0;
  }

  std::printf("model: %s (%s, %d layers, %s of tensors, %s head)\n", a.model.c_str(),
              m.arch.c_str(), m.n_layers, cluster::FormatBytes(m.total_tensor_bytes).c_str(),
              m.tied_output ? "tied" : "separate");
  std::printf(
      "ctx %d x %d parallel: KV cache (K %s, V %s) %.1f MiB per layer; batch %d; "
      "overhead %.1f MiB per node\n\n",
      opts.n_ctx, opts.n_parallel, DTypeName(opts.cache_type_k), DTypeName(opts.cache_type_v),
      MiB(cluster::KvBytesPerLayer(m, opts)), opts.n_batch, MiB(opts.process_overhead_bytes));
  std::printf("%-12s %-8s %11s %9s %11s %11s %11s %8s %7s\n", "node", "layers", "weights MiB",
              "KV MiB", "act+ovh MiB", "total MiB", "free MiB", "speed", "time");
  for (const cluster::StagePlan& s : plan.stages) {
    std::printf("%-12s %-8s %11.1f %9.1f %11.1f %11.1f %11.1f %8.3g %6.1f%%\n", s.node.c_str(),
                cluster::LayerRangeText(s.first, s.last).c_str(), MiB(s.memory.weights),
                MiB(s.memory.kv), MiB(s.memory.scratch + s.memory.overhead), MiB(s.memory.total()),
                MiB(s.free_memory_bytes), s.speed, 100.0 * s.time_share);
  }
  const uint64_t fit = PipelineKvFit(m, plan, opts);
  std::printf(
      "\nKV cache that fits the free memory: %llu positions = %llu slots x %d context, or "
      "%d slots x %llu context\n",
      static_cast<unsigned long long>(fit),
      static_cast<unsigned long long>(fit / static_cast<uint64_t>(opts.n_ctx)), opts.n_ctx,
      opts.n_parallel,
      static_cast<unsigned long long>(fit / static_cast<uint64_t>(opts.n_parallel)));
  return 0;
}

}  // namespace

Runner AddPlanCommand(CLI::App* cmd) {
  auto args = std::make_shared<PlanArgs>();
  cmd->add_option("--model,-m", args->model, "model GGUF")->required()->type_name("FILE");
  cmd->add_option("--nodes", args->nodes,
                  "nodes in pipeline order: NAME:mem=SIZE[,speed=X] (e.g. a:mem=8GiB,speed=1.5) "
                  "or NAME:local (this machine's free memory and measured speed)")
      ->required();
  cmd->add_option("--ctx,-c", args->ctx, "KV cache positions per sequence")->capture_default_str();
  cmd->add_option("--parallel", args->parallel, "concurrent sequences (KV cache slots)")
      ->capture_default_str();
  cmd->add_option("--batch,-b", args->batch, "tokens per forward step (activation buffers)")
      ->capture_default_str();
  AddKvCacheTypeOptions(cmd, &args->cache_type_k, &args->cache_type_v);
  cmd->add_option("--overhead", args->overhead, "fixed memory per node process")
      ->capture_default_str();
  cmd->add_flag("--json", args->json, "print the plan as JSON");
  return [args] { return Plan(*args); };
}

}  // namespace strata::cli
