// Pipeline partition planner: the memory each stage of a layer split needs (from the exact
// tensor sizes of the GGUF file, the KV cache layout and the activation buffers), and the
// split of a model's layers across nodes by their free memory and speed.
//
// The plan is a pure function of its inputs (no clocks, no randomness, no hash-map order),
// so every node computing it from the same ModelMemory, PlanNodes and PlanOptions gets the
// same answer. See docs/planner.md.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"
#include "cluster/config.h"
#include "gguf/gguf.h"
#include "tensor/dtype.h"

namespace strata::cluster {

inline constexpr uint64_t kMiB = uint64_t{1} << 20;
inline constexpr uint64_t kGiB = uint64_t{1} << 30;
// Resident memory of a stage process beyond weights, KV cache and activations: binary,
// tokenizer tables, thread stacks, allocator slack (measured ~58 MiB, docs/memory.md).
inline constexpr uint64_t kDefaultProcessOverheadBytes = 60 * kMiB;

// What a model's weights weigh, per piece, as stored in the GGUF file.
struct ModelMemory {
  std::string arch;  // "qwen2" / "llama"
  std::string name;  // general.name
  int n_layers = 0;
  int64_t hidden = 0;
  int64_t ffn = 0;
  int64_t q_dim = 0;   // n_heads * head_dim
  int64_t kv_dim = 0;  // n_kv_heads * head_dim
  int64_t n_vocab = 0;

  std::vector<uint64_t> layer_bytes;  // [n_layers] bytes of all "blk.N.*" tensors of layer N
  uint64_t embd_bytes = 0;            // token_embd.weight
  uint64_t embd_row_bytes = 0;        // one row of token_embd (read per token when embedding)
  uint64_t output_norm_bytes = 0;     // output_norm.weight
  uint64_t output_bytes = 0;          // output.weight; 0 when tied
  bool tied_output = false;           // no output.weight: the head reuses token_embd
  uint64_t shared_bytes = 0;          // tensors every stage binds (rope_freqs.weight)
  uint64_t other_bytes = 0;           // tensors no stage binds (not counted in any stage)
  uint64_t total_tensor_bytes = 0;    // all tensors of the file

  // The output head's matrix: output.weight, or token_embd.weight when tied.
  uint64_t head_matrix_bytes() const { return tied_output ? embd_bytes : output_bytes; }
};

// Reads the sizes from a GGUF file's tensor table (nothing is paged in).
Result<ModelMemory> ModelMemoryFromGguf(const gguf::File& file);
Result<ModelMemory> ModelMemoryFromGguf(const std::string& path);

struct PlanOptions {
  int n_ctx = 4096;                 // KV cache positions per sequence
  int n_parallel = 1;               // KV cache slots (concurrent sequences)
  int n_batch = 512;                // tokens per forward step (sizes the activation buffers)
  int n_threads = 16;               // attention score rows of n_ctx floats (one per thread)
  DType cache_type_k = DType::F16;  // KV cache types (KvCache: F16, Q8_0, Q4_0)
  DType cache_type_v = DType::F16;
  uint64_t process_overhead_bytes = kDefaultProcessOverheadBytes;
};

// Memory of one stage holding layers [first, last).
struct StageMemory {
  uint64_t weights = 0;   // its layers, + token_embd (first == 0), + output_norm and the
                          // head matrix (last == n_layers; token_embd again when tied unless
                          // the stage already maps it), + shared tensors
  uint64_t kv = 0;        // KV cache, exactly as KvCache::Create sizes it
  uint64_t scratch = 0;   // activation buffers of the forward pass, stage I/O and logits
  uint64_t overhead = 0;  // fixed per-process overhead
  uint64_t total() const { return weights + kv + scratch + overhead; }
};

// Bytes of the KV cache of one layer: n_parallel * n_ctx * (K row + V row of kv_dim elements
// in the cache types; f16: 2 bytes each).
uint64_t KvBytesPerLayer(const ModelMemory& m, const PlanOptions& o);
// KV positions (slots x context) a stage of layers [first, last) can hold in its free memory
// beyond its weights, activation buffers and process overhead (KV of n_parallel x n_ctx not
// counted); 0 when nothing is left.
uint64_t KvTokensThatFit(const ModelMemory& m, int first, int last, uint64_t free_bytes,
                         const PlanOptions& o);
// Activation buffers of a stage holding layers [first, last) (see docs/planner.md).
uint64_t ScratchBytes(const ModelMemory& m, int first, int last, const PlanOptions& o);
StageMemory StageMemoryFor(const ModelMemory& m, int first, int last, const PlanOptions& o);
// Work of a stage per token, in bytes of weights streamed (decode is memory-bound): its
// layers, one embedding row (first == 0), the output norm and head matrix (last == n_layers).
double StageCost(const ModelMemory& m, int first, int last);

// One node of the pipeline, in pipeline order.
struct PlanNode {
  std::string name;
  uint64_t free_memory_bytes = 0;
  double speed = 1.0;  // relative (> 0); MeasureNodeSpeed() reports GB/s of Q8_0 matvec
};

struct StagePlan {
  std::string node;
  int first = 0;  // layers [first, last); printed inclusive as "first-(last-1)"
  int last = 0;
  uint64_t free_memory_bytes = 0;
  double speed = 1.0;
  StageMemory memory;
  double cost = 0;        // StageCost
  double time = 0;        // cost / speed (relative time per token)
  double time_share = 0;  // time / sum of all stages' times

  int n_layers() const { return last - first; }
};

struct Plan {
  int n_layers = 0;
  std::vector<StagePlan> stages;  // one per node, in pipeline order
  double bottleneck = 0;          // max stage time: bounds pipelined throughput
};

// Splits the model's layers into contiguous ranges, one per node (each >= 1 layer), such that
// every stage fits its node's free memory. Among fitting splits it minimizes the slowest
// stage's time, then the sum of squared stage times (the most even split), then prefers
// earlier boundaries. When no split fits: an error naming the smallest total shortfall and,
// for the split achieving it, each node that is short ("does not fit: needs 2.1 GiB more;
// node b has 1.0 GiB free for layers 14-27 needing 3.1 GiB").
Result<Plan> PlanPipeline(const ModelMemory& model, const std::vector<PlanNode>& nodes,
                          const PlanOptions& opts);

// The pipeline starting at node `head` of a cluster config, following `next`, as planner
// nodes (name, memory, speed). Errors: unknown head or next, a cycle, or a node without
// `memory` (the planner needs every node's free memory).
Result<std::vector<PlanNode>> PipelineNodesFromConfig(const ClusterConfig& config,
                                                      std::string_view head);

// ---- Node facts ---------------------------------------------------------------------------

// MemAvailable of /proc/meminfo, in bytes.
Result<uint64_t> LocalFreeMemory();
// Parses MemAvailable out of /proc/meminfo text.
Result<uint64_t> ParseMemAvailable(std::string_view meminfo);
// This machine's speed (PlanNode::speed) is measured by MeasureNodeSpeed() in
// cluster/speed_probe.h (library strata_plan_probe: it runs the engine's kernels, which this
// library does not link).

// ---- Text ---------------------------------------------------------------------------------

// "2.1 GiB" / "312.4 MiB" / "12.0 KiB" / "100 B".
std::string FormatBytes(uint64_t bytes);
// Layer range [first, last) as printed: "first-(last-1)", e.g. "0-13".
std::string LayerRangeText(int first, int last);

// "name:mem=8GiB[,speed=1.5]" (sizes as cluster.yaml: ParseByteSize of config.h). "name:local" is recognized by the caller (`is_local` set,
// memory and speed left for it to measure).
struct ParsedPlanNode {
  PlanNode spec;
  bool is_local = false;
};
Result<ParsedPlanNode> ParsePlanNode(std::string_view text);

}  // namespace strata::cluster
