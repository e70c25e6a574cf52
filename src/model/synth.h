// Synthesizes GGUF models with random weights in the exact tensor layout of real checkpoints
// (named shapes of the DeepSeek-R1 distills, or a custom small shape) and a real tokenizer
// copied from a vocabulary GGUF. Used by tests and demos instead of downloads.
#pragma once

#include <cstdint>
#include <string>

#include "base/status.h"
#include "tensor/dtype.h"

namespace strata {

struct SynthShape {
  std::string arch = "qwen2";  // "qwen2" or "llama"
  int n_layers = 2;
  int64_t hidden = 64;
  int64_t ffn = 128;
  int n_heads = 4;
  int n_kv_heads = 2;
  int64_t n_vocab = 0;  // 0: the vocabulary file's token count
  int64_t n_ctx_train = 131072;
  float rope_base = 10000.0f;
  float rms_eps = 1e-6f;
  bool llama3_rope = false;  // write rope_freqs (factor 8, low 1, high 4, original 8192)
  bool tied_output = false;
  bool r1_tokens = true;  // rename special tokens as the DeepSeek-R1 distills do
};

// "r1-qwen-1.5b", "r1-qwen-7b", "r1-llama-8b", "tiny-qwen2", "tiny-llama",
// "tiny-qwen2-k", "tiny-llama-k" (rows a multiple of 256, as the K-quant types need), and
// "demo" (the model `strata up` serves without --model: qwen2, 8 layers, hidden 256).
Result<SynthShape> NamedSynthShape(const std::string& name);

struct SynthOptions {
  SynthShape shape;
  DType type = DType::F32;  // of the 2-D weights (F32/F16/BF16/Q8_0/Q4_0/Q4_K/Q5_K/Q6_K);
                            // norms (and biases) stay F32
  uint64_t seed = 1;
  std::string vocab_path;     // vocabulary GGUF to copy the tokenizer from ("": the Qwen2
                              // vocabulary compiled into the binary)
  std::string template_path;  // Jinja chat template to embed (empty: the vocab file's, if any)
  int threads = 0;            // 0: all cores
  // Marks the file as the demo model: metadata strata.demo = true (nodes then warn that its
  // weights are random) and general.name "strata-demo".
  bool demo = false;
  bool progress = true;  // progress on stderr (base/progress.h)
};

// The metadata key marking a demo model (random weights: its text is meaningless).
inline constexpr const char* kDemoMetadataKey = "strata.demo";
// The shape, type and seed of the demo model; the file is a pure function of them.
SynthOptions DemoSynthOptions();

// Default data directory (tests/data of the source tree, or $STRATA_DATA_DIR).
std::string DefaultDataDir();
// The vocabulary a named shape's architecture uses, under DefaultDataDir(); "" (the embedded
// Qwen2 vocabulary) for a qwen2 shape when that file is absent (an installed binary).
std::string DefaultVocabFor(const SynthShape& shape);
std::string DefaultR1TemplatePath();

Status SynthesizeModel(const SynthOptions& opts, const std::string& out_path);

}  // namespace strata
