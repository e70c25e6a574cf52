// The small synthetic models the C++ tests run on (one helper instead of a copy per test):
// a named synthetic shape (model/synth.h) with the test's own sizes, weight type and seed, and
// a tokenizer copied from tests/data/vocab. No download, a few milliseconds each.
#pragma once

#include <cstdint>
#include <string>

#include "base/status.h"
#include "tensor/dtype.h"

namespace strata::testdata {

struct TinyModelSpec {
  std::string shape = "tiny-qwen2";  // a NamedSynthShape name ("tiny-llama", "tiny-llama-k", ...)
  int n_layers = 0;                  // 0: the named shape's (likewise for the sizes below)
  int64_t hidden = 0;
  int64_t ffn = 0;
  int n_heads = 0;
  int n_kv_heads = 0;
  bool tied = false;         // the output head shares the embedding
  bool r1_tokens = true;     // rename special tokens as the R1 distills do
  DType type = DType::Q8_0;  // of the 2-D weights
  uint64_t seed = 1;
  std::string vocab;  // vocabulary GGUF; empty: the shape's default
};

// The smallest shape most engine tests use: 3 layers, hidden 64, ffn 96, 4 heads (2 KV),
// plain special tokens, the SentencePiece vocabulary; `shape` "tiny-qwen2" or "tiny-llama".
TinyModelSpec MiniSpec(const std::string& shape);

// Synthesizes `spec` into `path` (2 threads).
Status WriteTinyModel(const TinyModelSpec& spec, const std::string& path);

// WriteTinyModel into the temporary directory as `name`; returns the path.
Result<std::string> TinyModelFile(const TinyModelSpec& spec, const std::string& name);
// TinyModelFile for a test: the path, or "" after recording the error as a test failure.
std::string TinyModelPath(const TinyModelSpec& spec, const std::string& name);

// tests/data/vocab/<file> of the source tree.
std::string TestVocab(const std::string& file);
// The SentencePiece (llama) vocabulary most engine tests use.
inline std::string SpmVocab() { return TestVocab("ggml-vocab-llama-spm.gguf"); }

}  // namespace strata::testdata
