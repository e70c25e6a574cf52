#include "cluster/planner.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <limits>
#include <memory>
#include <optional>
#include <sstream>

#include "model/config.h"
#include "model/kv_cache.h"
#include "tensor/dtype.h"

namespace strata::cluster {
namespace {

constexpr uint64_t kF32 = sizeof(float);

// "blk.N.rest" -> N, or -1 when the name is not a layer tensor.
int LayerIndexOf(std::string_view name) {
  constexpr std::string_view kPrefix = "blk.";
  if (name.substr(0, kPrefix.size()) != kPrefix) return -1;
  size_t i = kPrefix.size();
  int64_t n = 0;
  size_t digits = 0;
  while (i < name.size() && std::isdigit(static_cast<unsigned char>(name[i]))) {
    n = n * 10 + (name[i] - '0');
    if (n > std::numeric_limits<int>::max()) return -1;
    ++i;
    ++digits;
  }
  if (digits == 0 || i >= name.size() || name[i] != '.') return -1;
  return static_cast<int>(n);
}

std::string Lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

}  // namespace

// ---- Memory model -------------------------------------------------------------------------

Result<ModelMemory> ModelMemoryFromGguf(const gguf::File& file) {
  STRATA_ASSIGN_OR_RETURN(ModelConfig c, ConfigFromGguf(file));
  ModelMemory m{.arch = c.arch_name,
                .name = c.name,
                .n_layers = c.n_layers,
                .hidden = c.hidden,
                .ffn = c.ffn,
                .q_dim = c.q_dim(),
                .kv_dim = c.kv_dim(),
                .n_vocab = c.n_vocab,
                .layer_bytes = std::vector<uint64_t>(static_cast<size_t>(c.n_layers), 0)};
  bool has_embd = false, has_norm = false, has_output = false;
  for (const gguf::TensorInfo& t : file.tensors()) {
    m.total_tensor_bytes += t.nbytes;
    const int il = LayerIndexOf(t.name);
    if (il >= 0 && il < c.n_layers) {
      m.layer_bytes[static_cast<size_t>(il)] += t.nbytes;
    } else if (t.name == "token_embd.weight") {
      has_embd = true;
      m.embd_bytes = t.nbytes;
      m.embd_row_bytes = t.dims.empty() ? 0 : RowBytesUnchecked(t.type, t.dims[0]);
    } else if (t.name == "output_norm.weight") {
      has_norm = true;
      m.output_norm_bytes = t.nbytes;
    } else if (t.name == "output.weight") {
      has_output = true;
      m.output_bytes = t.nbytes;
    } else if (t.name == "rope_freqs.weight") {
      m.shared_bytes += t.nbytes;
    } else {
      m.other_bytes += t.nbytes;
    }
  }
  if (!has_embd) return Status::Error("the model has no token_embd.weight tensor");
  if (!has_norm) return Status::Error("the model has no output_norm.weight tensor");
  m.tied_output = !has_output;
  for (int il = 0; il < c.n_layers; ++il)
    if (m.layer_bytes[static_cast<size_t>(il)] == 0)
      return Errorf("the model has no tensors for layer %d (blk.%d.*)", il, il);
  return m;
}

Result<ModelMemory> ModelMemoryFromGguf(const std::string& path) {
  auto f = gguf::File::Open(path);
  if (!f.ok()) return f.status().With("reading '" + path + "'");
  auto m = ModelMemoryFromGguf(*f.value());
  if (!m.ok()) return m.status().With("'" + path + "'");
  return m;
}

uint64_t KvBytesPerLayer(const ModelMemory& m, const PlanOptions& o) {
  // As KvCache::Create.
  return KvCache::BytesFor(1, std::max(o.n_parallel, 0), std::max(o.n_ctx, 0), m.kv_dim,
                           o.cache_type_k, o.cache_type_v);
}

uint64_t KvTokensThatFit(const ModelMemory& m, int first, int last, uint64_t free_bytes,
                         const PlanOptions& o) {
  const StageMemory s = StageMemoryFor(m, first, last, o);
  const uint64_t fixed = s.weights + s.scratch + s.overhead;
  const uint64_t per_token =
      KvCache::BytesFor(std::max(last - first, 0), 1, 1, m.kv_dim, o.cache_type_k, o.cache_type_v);
  if (free_bytes <= fixed || per_token == 0) return 0;
  return (free_bytes - fixed) / per_token;
}

uint64_t ScratchBytes(const ModelMemory& m, int first, int last, const PlanOptions& o) {
  const uint64_t B = static_cast<uint64_t>(std::max(o.n_batch, 1));
  const uint64_t H = static_cast<uint64_t>(m.hidden), QD = static_cast<uint64_t>(m.q_dim),
                 KVD = static_cast<uint64_t>(m.kv_dim), FF = static_cast<uint64_t>(m.ffn);
  // Forward's buffers: x, xn, proj [B, H]; q, attn [B, QD]; k, v [B, KVD]; gate, up [B, FF].
  uint64_t bytes = B * (3 * H + 2 * QD + 2 * KVD + 2 * FF) * kF32;
  // Matmul activation scratch (converted copies of the input rows), bounded by f32 [B, max].
  bytes += B * std::max(H, FF) * kF32;
  // Attention scores: [n_threads, n_ctx] f32.
  bytes += static_cast<uint64_t>(std::max(o.n_threads, 1)) *
           static_cast<uint64_t>(std::max(o.n_ctx, 0)) * kF32;
  // Activations received from the previous stage / sent to the next: [B, H] f32 each.
  if (first > 0) bytes += B * H * kF32;
  if (last < m.n_layers) bytes += B * H * kF32;
  // Logits and sampler probabilities of the last stage: [n_parallel, n_vocab] f32, twice.
  if (last == m.n_layers)
    bytes += 2 * static_cast<uint64_t>(std::max(o.n_parallel, 1)) *
             static_cast<uint64_t>(m.n_vocab) * kF32;
  return bytes;
}

StageMemory StageMemoryFor(const ModelMemory& m, int first, int last, const PlanOptions& o) {
  StageMemory s;
  for (int il = std::max(first, 0); il < std::min(last, m.n_layers); ++il)
    s.weights += m.layer_bytes[static_cast<size_t>(il)];
  s.weights += m.shared_bytes;
  if (first == 0) s.weights += m.embd_bytes;
  if (last == m.n_layers) {
    s.weights += m.output_norm_bytes;
    // A tied head maps token_embd; a stage that also embeds maps it only once.
    if (!m.tied_output) s.weights += m.output_bytes;
    else if (first != 0) s.weights += m.embd_bytes;
  }
  s.kv = KvBytesPerLayer(m, o) * static_cast<uint64_t>(std::max(last - first, 0));
  s.scratch = ScratchBytes(m, first, last, o);
  s.overhead = o.process_overhead_bytes;
  return s;
}

double StageCost(const ModelMemory& m, int first, int last) {
  uint64_t bytes = 0;
  for (int il = std::max(first, 0); il < std::min(last, m.n_layers); ++il)
    bytes += m.layer_bytes[static_cast<size_t>(il)];
  if (first == 0) bytes += m.embd_row_bytes;
  if (last == m.n_layers) bytes += m.output_norm_bytes + m.head_matrix_bytes();
  return static_cast<double>(bytes);
}

// ---- Planning -----------------------------------------------------------------------------

namespace {

Status ValidateInputs(const ModelMemory& m, const std::vector<PlanNode>& nodes,
                      const PlanOptions& o) {
  if (m.n_layers <= 0 || m.layer_bytes.size() != static_cast<size_t>(m.n_layers))
    return Errorf("the model description is invalid (%d layers, %zu layer sizes)", m.n_layers,
                  m.layer_bytes.size());
  if (nodes.empty()) return Status::Error("no nodes to plan for");
  if (o.n_ctx <= 0) return Errorf("invalid context size %d (must be > 0)", o.n_ctx);
  if (o.n_parallel <= 0)
    return Errorf("invalid parallel slot count %d (must be > 0)", o.n_parallel);
  if (o.n_batch <= 0) return Errorf("invalid batch size %d (must be > 0)", o.n_batch);
  for (size_t i = 0; i < nodes.size(); ++i) {
    const PlanNode& n = nodes[i];
    if (n.name.empty()) return Errorf("node %zu has no name", i + 1);
    if (!(n.speed > 0) || !std::isfinite(n.speed))
      return Errorf("node %s: speed must be a finite number > 0 (got %g)", n.name.c_str(), n.speed);
    for (size_t j = 0; j < i; ++j)
      if (nodes[j].name == n.name) return Errorf("node name '%s' appears twice", n.name.c_str());
  }
  if (nodes.size() > static_cast<size_t>(m.n_layers))
    return Errorf(
        "%zu nodes but the model has only %d layers: every node needs at least one "
        "layer (use at most %d nodes)",
        nodes.size(), m.n_layers, m.n_layers);
  return Status::Ok();
}

// Dynamic programs over (nodes used, layers covered): cell [j][i] is the best way to give
// layers [0, i) to nodes 0..j-1, each a non-empty contiguous range.
struct Table {
  Table(size_t nodes, size_t layers) : w(layers + 1), cells(nodes + 1) {
    for (auto& row : cells) row.assign(w, Cell());
  }
  struct Cell {
    bool ok = false;
    double a = 0, b = 0;  // objective (primary, secondary)
    uint64_t c = 0;       // integer objective (shortfall)
    int prev = -1;        // start layer of node j-1's range
  };
  size_t w;
  std::vector<std::vector<Cell>> cells;
};

std::vector<std::pair<int, int>> Backtrack(const Table& t, int n_nodes, int n_layers) {
  std::vector<std::pair<int, int>> ranges(static_cast<size_t>(n_nodes));
  int i = n_layers;
  for (int j = n_nodes; j >= 1; --j) {
    const int a = t.cells[static_cast<size_t>(j)][static_cast<size_t>(i)].prev;
    ranges[static_cast<size_t>(j - 1)] = {a, i};
    i = a;
  }
  return ranges;
}

// Fills a Table for n_nodes nodes and n_layers layers: each cell [j][i] is relaxed with every
// ok cell [j - 1][a] through relax(cell, prev, node, a, i), node j - 1 taking layers [a, i).
// Node j may end its range at i in [j + 1, n_layers - (n_nodes - 1 - j)]; the last ends at
// n_layers.
template <typename Relax>
Table SolveSplits(int n_nodes, int n_layers, const Relax& relax) {
  Table t(static_cast<size_t>(n_nodes), static_cast<size_t>(n_layers));
  t.cells[0][0].ok = true;
  for (int j = 1; j <= n_nodes; ++j) {
    for (int i = j; i <= n_layers - (n_nodes - j); ++i) {
      if (j == n_nodes && i != n_layers) continue;
      auto& cell = t.cells[static_cast<size_t>(j)][static_cast<size_t>(i)];
      for (int a = j - 1; a < i; ++a) {
        const auto& p = t.cells[static_cast<size_t>(j - 1)][static_cast<size_t>(a)];
        if (p.ok) relax(cell, p, j - 1, a, i);
      }
    }
  }
  return t;
}

}  // namespace

Result<Plan> PlanPipeline(const ModelMemory& m, const std::vector<PlanNode>& nodes,
                          const PlanOptions& o) {
  STRATA_RETURN_IF_ERROR(ValidateInputs(m, nodes, o));
  const int N = static_cast<int>(nodes.size());
  const int L = m.n_layers;
  // need[a][b], cost[a][b]: memory and work of a stage holding layers [a, b).
  const size_t W = static_cast<size_t>(L) + 1;
  std::vector<uint64_t> need_tab(W * W, 0);
  std::vector<double> cost_tab(W * W, 0);
  for (int a = 0; a < L; ++a)
    for (int b = a + 1; b <= L; ++b) {
      need_tab[static_cast<size_t>(a) * W + static_cast<size_t>(b)] =
          StageMemoryFor(m, a, b, o).total();
      cost_tab[static_cast<size_t>(a) * W + static_cast<size_t>(b)] = StageCost(m, a, b);
    }
  auto need = [&](int a, int b) {
    return need_tab[static_cast<size_t>(a) * W + static_cast<size_t>(b)];
  };
  auto time = [&](int j, int a, int b) {
    return cost_tab[static_cast<size_t>(a) * W + static_cast<size_t>(b)] /
           nodes[static_cast<size_t>(j)].speed;
  };
  auto fits = [&](int j, int a, int b) {
    return need(a, b) <= nodes[static_cast<size_t>(j)].free_memory_bytes;
  };
  using Cell = Table::Cell;

  // Pass 1: the smallest possible bottleneck (slowest stage time) among fitting splits.
  const Table t1 = SolveSplits(N, L, [&](Cell& cell, const Cell& p, int node, int a, int i) {
    if (!fits(node, a, i)) return;
    const double v = std::max(p.a, time(node, a, i));
    if (!cell.ok || v < cell.a) cell = {true, v, 0, 0, a};
  });
  const auto& best = t1.cells[static_cast<size_t>(N)][static_cast<size_t>(L)];

  if (!best.ok) {
    // No split fits: find the split needing the least extra memory in total (ties: the
    // smaller bottleneck) and report each node it leaves short.
    const Table t2 = SolveSplits(N, L, [&](Cell& cell, const Cell& p, int node, int a, int i) {
      const uint64_t free = nodes[static_cast<size_t>(node)].free_memory_bytes;
      const uint64_t n = need(a, i);
      const uint64_t s = p.c + (n > free ? n - free : 0);
      const double v = std::max(p.a, time(node, a, i));
      if (!cell.ok || s < cell.c || (s == cell.c && v < cell.a)) cell = {true, v, 0, s, a};
    });
    const auto& worst = t2.cells[static_cast<size_t>(N)][static_cast<size_t>(L)];
    std::string msg =
        StrFormat("does not fit: needs %s (%llu bytes) more", FormatBytes(worst.c).c_str(),
                  static_cast<unsigned long long>(worst.c));
    const auto ranges = Backtrack(t2, N, L);
    for (int j = 0; j < N; ++j) {
      const auto [a, b] = ranges[static_cast<size_t>(j)];
      const StageMemory sm = StageMemoryFor(m, a, b, o);
      const uint64_t free = nodes[static_cast<size_t>(j)].free_memory_bytes;
      if (sm.total() <= free) continue;
      msg += StrFormat(
          "; node %s has %s free for layers %s needing %s (weights %s, KV cache "
          "%s, activations %s, overhead %s)",
          nodes[static_cast<size_t>(j)].name.c_str(), FormatBytes(free).c_str(),
          LayerRangeText(a, b).c_str(), FormatBytes(sm.total()).c_str(),
          FormatBytes(sm.weights).c_str(), FormatBytes(sm.kv).c_str(),
          FormatBytes(sm.scratch).c_str(), FormatBytes(sm.overhead).c_str());
    }
    return Status::Error(msg);
  }

  // Pass 2: among splits whose every stage fits and is no slower than the bottleneck, the
  // most even one (least sum of squared stage times); ties keep the earliest boundary.
  const double bound = best.a;
  const Table t3 = SolveSplits(N, L, [&](Cell& cell, const Cell& p, int node, int a, int i) {
    if (!fits(node, a, i)) return;
    const double tj = time(node, a, i);
    if (tj > bound) return;
    const double v = p.b + tj * tj;
    if (!cell.ok || v < cell.b) cell = {true, 0, v, 0, a};
  });
  // The pass-1 split satisfies pass 2's constraints, so pass 2 always finds one.
  const auto ranges = Backtrack(t3, N, L);

  Plan plan;
  plan.n_layers = L;
  double total_time = 0;
  for (int j = 0; j < N; ++j) {
    const PlanNode& n = nodes[static_cast<size_t>(j)];
    StagePlan s;
    s.node = n.name;
    s.first = ranges[static_cast<size_t>(j)].first;
    s.last = ranges[static_cast<size_t>(j)].second;
    s.free_memory_bytes = n.free_memory_bytes;
    s.speed = n.speed;
    s.memory = StageMemoryFor(m, s.first, s.last, o);
    s.cost = StageCost(m, s.first, s.last);
    s.time = s.cost / n.speed;
    total_time += s.time;
    plan.bottleneck = std::max(plan.bottleneck, s.time);
    plan.stages.push_back(std::move(s));
  }
  for (StagePlan& s : plan.stages) s.time_share = total_time > 0 ? s.time / total_time : 0;
  return plan;
}

Result<std::vector<PlanNode>> PipelineNodesFromConfig(const ClusterConfig& config,
                                                      std::string_view head) {
  std::vector<PlanNode> out;
  const cluster::NodeSpec* n = config.FindNode(head);
  if (!n)
    return Errorf("%s: no node named '%.*s'", config.source.c_str(), static_cast<int>(head.size()),
                  head.data());
  while (n) {
    for (const PlanNode& p : out)
      if (p.name == n->name)
        return Errorf("%s: the pipeline from '%.*s' loops back to node '%s'", config.source.c_str(),
                      static_cast<int>(head.size()), head.data(), n->name.c_str());
    if (n->memory <= 0)
      return Errorf(
          "%s:%d: node '%s' has no memory: the layer planner needs each pipeline "
          "node's free memory",
          config.source.c_str(), n->line, n->name.c_str());
    out.push_back({n->name, static_cast<uint64_t>(n->memory), n->speed});
    if (n->next.empty()) break;
    const cluster::NodeSpec* next = config.FindNode(n->next);
    if (!next)
      return Errorf("%s:%d: node '%s': next node '%s' does not exist", config.source.c_str(),
                    n->line, n->name.c_str(), n->next.c_str());
    n = next;
  }
  return out;
}

// ---- Node facts ---------------------------------------------------------------------------

Result<uint64_t> ParseMemAvailable(std::string_view text) {
  constexpr std::string_view kKey = "MemAvailable:";
  size_t pos = 0;
  while (pos < text.size()) {
    size_t eol = text.find('\n', pos);
    if (eol == std::string_view::npos) eol = text.size();
    std::string_view line = text.substr(pos, eol - pos);
    pos = eol + 1;
    if (line.substr(0, kKey.size()) != kKey) continue;
    std::string rest(line.substr(kKey.size()));
    std::istringstream in(rest);
    unsigned long long value = 0;
    std::string unit;
    if (!(in >> value))
      return Status::Error("MemAvailable line has no number: " + std::string(line));
    in >> unit;
    if (unit.empty() || Lower(unit) == "b") return static_cast<uint64_t>(value);
    if (Lower(unit) == "kb") return static_cast<uint64_t>(value) * 1024;
    return Errorf("MemAvailable has an unknown unit '%s'", unit.c_str());
  }
  return Status::Error("no MemAvailable line in /proc/meminfo (kernel older than 3.14?)");
}

Result<uint64_t> LocalFreeMemory() {
  std::ifstream in("/proc/meminfo");
  if (!in) return Status::Error("cannot read /proc/meminfo");
  std::stringstream ss;
  ss << in.rdbuf();
  return ParseMemAvailable(ss.str());
}

// ---- Text ---------------------------------------------------------------------------------

std::string FormatBytes(uint64_t bytes) {
  const double b = static_cast<double>(bytes);
  if (bytes >= kGiB) return StrFormat("%.1f GiB", b / static_cast<double>(kGiB));
  if (bytes >= kMiB) return StrFormat("%.1f MiB", b / static_cast<double>(kMiB));
  if (bytes >= 1024) return StrFormat("%.1f KiB", b / 1024.0);
  return StrFormat("%llu B", static_cast<unsigned long long>(bytes));
}

std::string LayerRangeText(int first, int last) { return StrFormat("%d-%d", first, last - 1); }

Result<ParsedPlanNode> ParsePlanNode(std::string_view text) {
  const std::string t(text);
  const size_t colon = t.find(':');
  const std::string usage = " (expected NAME:mem=SIZE[,speed=X] or NAME:local)";
  if (colon == std::string::npos || colon == 0)
    return Status::Error("invalid node '" + t + "'" + usage);
  ParsedPlanNode out;
  out.spec.name = t.substr(0, colon);
  for (char c : out.spec.name)
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '_' && c != '.')
      return Status::Error("invalid node name '" + out.spec.name +
                           "' (letters, digits, '-', '_', '.')");
  const std::string rest = t.substr(colon + 1);
  if (rest == "local") {
    out.is_local = true;
    return out;
  }
  bool have_mem = false;
  size_t pos = 0;
  while (pos <= rest.size()) {
    size_t comma = rest.find(',', pos);
    if (comma == std::string::npos) comma = rest.size();
    const std::string item = rest.substr(pos, comma - pos);
    pos = comma + 1;
    const size_t eq = item.find('=');
    if (eq == std::string::npos)
      return Status::Error("invalid node '" + t + "': '" + item + "'" + usage);
    const std::string key = Lower(item.substr(0, eq)), val = item.substr(eq + 1);
    if (key == "mem" || key == "memory") {
      const std::optional<int64_t> b = ParseByteSize(val);
      if (!b || *b < 0)
        return Status::Error("node " + out.spec.name + ": invalid size '" + val +
                             "' (e.g. 8GiB, 512MiB, 16GB)");
      out.spec.free_memory_bytes = static_cast<uint64_t>(*b);
      have_mem = true;
    } else if (key == "speed") {
      char* end = nullptr;
      const double s = std::strtod(val.c_str(), &end);
      if (val.empty() || end != val.c_str() + val.size() || !(s > 0) || !std::isfinite(s))
        return Status::Error("node " + out.spec.name + ": invalid speed '" + val +
                             "' (a number > 0)");
      out.spec.speed = s;
    } else {
      return Status::Error("invalid node '" + t + "': unknown key '" + key + "'" + usage);
    }
  }
  if (!have_mem) return Status::Error("node " + out.spec.name + ": missing mem=SIZE" + usage);
  return out;
}

}  // namespace strata::cluster
