// Model quantization (`strata quantize`): converts a GGUF whose weights are F32/F16/BF16 into
// one of llama.cpp's file types (Q8_0, Q4_0, Q4_K_M, Q5_K_M, Q6_K), choosing the type of every
// tensor by the same rules as llama.cpp's llama-quantize without an importance matrix, and
// writing the tensors in the same order with the same metadata edits, so that the output
// matches llama-quantize's.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "base/status.h"
#include "tensor/dtype.h"

namespace strata {

// llama.cpp file types ("ftype") Strata can produce, one row each: enumerator, value (as
// llama.cpp's enum llama_ftype, also the value of general.file_type), name, and the type most
// tensors get (DefaultTensorType).
#define STRATA_QUANT_FILE_TYPES(X) \
  X(kQ4_0, 2, "Q4_0", Q4_0)        \
  X(kQ8_0, 7, "Q8_0", Q8_0)        \
  X(kQ4_K_M, 15, "Q4_K_M", Q4_K)   \
  X(kQ5_K_M, 17, "Q5_K_M", Q5_K)   \
  X(kQ6_K, 18, "Q6_K", Q6_K)

enum class QuantFileType : uint32_t {
#define STRATA_QUANT_FILE_TYPE_ENUMERATOR(name, value, text, tensor_type) name = value,
  STRATA_QUANT_FILE_TYPES(STRATA_QUANT_FILE_TYPE_ENUMERATOR)
#undef STRATA_QUANT_FILE_TYPE_ENUMERATOR
};

// "Q4_K_M", ...
const char* QuantFileTypeName(QuantFileType t);
// Case-insensitive: "q8_0", "Q4_0", "q4_k_m", "Q5_K_M", "q6_k". Error names the accepted ones.
Result<QuantFileType> ParseQuantFileType(const std::string& name);
// The type most tensors get (Q4_K for Q4_K_M, ...).
DType DefaultTensorType(QuantFileType t);

// A tensor as the planner sees it.
struct QuantTensorDesc {
  std::string name;
  std::vector<int64_t> dims;  // dims[0] is the row length
  DType type = DType::F32;    // of the input
};

// Hyper-parameters the rules depend on.
struct QuantModelInfo {
  std::string arch;  // "qwen2" / "llama"
  int n_layers = 0;  // {arch}.block_count
  int n_heads = 0;
  int n_kv_heads = 0;
};

struct QuantTensorPlan {
  std::string name;
  std::vector<int64_t> dims;
  DType from = DType::F32;
  DType to = DType::F32;
  bool fallback = false;  // the row length forced a different type than the rules chose
};

// Whether llama-quantize would quantize this tensor at all (2-D+ "*weight" tensors other than
// norms and a few kinds of small tables); others keep their type.
bool TensorAllowsQuantization(const std::string& name, int n_dims);

// The output types of `tensors`, in llama.cpp's processing (and file) order: global tensors
// first, then by layer index, by name within each group. Errors when a tensor is already
// quantized or not a float type, when the model is a mixture of experts, or when a shape
// fallback needs a type Strata cannot run (Q5_0 / Q5_1).
Result<std::vector<QuantTensorPlan>> PlanQuantization(const std::vector<QuantTensorDesc>& tensors,
                                                      const QuantModelInfo& model,
                                                      QuantFileType ftype);

struct QuantizeOptions {
  int threads = 0;  // 0: all cores
  // Progress lines ("[ 12/339] blk.0.attn_v.weight  F16 -> Q6_K ..."); may be empty.
  std::function<void(const std::string&)> log;
  // A progress bar with rate and ETA over the input bytes (base/progress.h) on stderr.
  bool progress = false;
};

struct QuantizeStats {
  int n_tensors = 0;
  int n_quantized = 0;
  int n_fallback = 0;
  uint64_t bytes_in = 0;  // tensor data
  uint64_t bytes_out = 0;
  int64_t n_elements = 0;
  double seconds = 0;
};

// Reads `in_path`, quantizes its tensors per PlanQuantization and writes `out_path` (all
// metadata kept, general.quantization_version = 2 and general.file_type = ftype set; same
// alignment). Tensors are produced one at a time while writing, each by several threads, so
// memory beyond the input mapping stays about one output tensor.
Result<QuantizeStats> QuantizeModel(const std::string& in_path, const std::string& out_path,
                                    QuantFileType ftype, const QuantizeOptions& opts = {});

}  // namespace strata
