// Model hyper-parameters read from GGUF metadata ("{arch}.*" keys, as llama.cpp names them).
#pragma once

#include <cstdint>
#include <string>

#include "base/status.h"
#include "gguf/gguf.h"

namespace strata {

enum class Arch { kLlama, kQwen2 };

struct ModelConfig {
  Arch arch = Arch::kLlama;
  std::string arch_name;  // "llama" / "qwen2"
  std::string name;       // general.name

  int n_layers = 0;
  int64_t hidden = 0;  // embedding_length
  int64_t ffn = 0;     // feed_forward_length
  int n_heads = 0;
  int n_kv_heads = 0;
  int head_dim = 0;  // embedding_length / head_count unless attention.key_length says
  int64_t n_vocab = 0;
  int64_t n_ctx_train = 0;
  float rms_eps = 1e-5f;
  float rope_base = 10000.0f;
  float rope_freq_scale = 1.0f;  // linear rope scaling: 1 / rope.scaling.factor
  bool rope_neox = false;        // qwen2: rotate (i, i + d/2); llama: (2i, 2i+1)
  bool qkv_bias = false;         // qwen2

  int64_t q_dim() const { return static_cast<int64_t>(n_heads) * head_dim; }
  int64_t kv_dim() const { return static_cast<int64_t>(n_kv_heads) * head_dim; }
};

// Reads and validates the hyper-parameters. Unsupported architectures or rope scaling
// types are refused with a message naming them.
Result<ModelConfig> ConfigFromGguf(const gguf::File& file);

}  // namespace strata
