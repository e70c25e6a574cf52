// Binds the tensors of a contiguous layer range [first, last) of a GGUF model to views into
// the mapping. Only the tensors of that range (plus the embedding when first == 0, and the
// final norm + output head when last == n_layers) are validated and ever touched.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "base/status.h"
#include "gguf/gguf.h"
#include "model/config.h"
#include "tensor/dtype.h"

namespace strata {

// A 2-D weight matrix [rows, cols] (GGUF dims [cols, rows]): rows contiguous, in `type`.
struct Matrix {
  const uint8_t* data = nullptr;
  DType type = DType::F32;
  int64_t rows = 0;
  int64_t cols = 0;
  uint64_t row_bytes = 0;
  bool present() const { return data != nullptr; }
};

struct LayerWeights {
  std::vector<float> attn_norm;   // [hidden]
  Matrix wq;                      // [n_heads * head_dim, hidden]
  Matrix wk;                      // [n_kv_heads * head_dim, hidden]
  Matrix wv;                      // [n_kv_heads * head_dim, hidden]
  std::vector<float> bq, bk, bv;  // qwen2 biases, empty otherwise
  Matrix wo;                      // [hidden, n_heads * head_dim]
  std::vector<float> ffn_norm;    // [hidden]
  Matrix w_gate;                  // [ffn, hidden]
  Matrix w_up;                    // [ffn, hidden]
  Matrix w_down;                  // [hidden, ffn]
};

// How a server or a tool loads a model: the layer range [first, last) (last = -1: all), and
// where the streamed matrices live: copied into huge pages (Model::CopyToHugePages, the
// default) or left in the file mapping (`mmap`: replicas on one machine share the page cache).
struct ModelLoadOptions {
  int first = 0, last = -1;
  bool mmap = false;
  bool progress = false;  // show the huge-page copy's progress
};

class Model {
 public:
  // Opens `path` and binds layers [first, last); last = -1 means all layers.
  static Result<std::unique_ptr<Model>> Load(const std::string& path, int first = 0, int last = -1);
  // Load, then CopyToHugePages unless o.mmap.
  static Result<std::unique_ptr<Model>> Load(const std::string& path, const ModelLoadOptions& o);
  static Result<std::unique_ptr<Model>> FromFile(std::shared_ptr<gguf::File> file, int first,
                                                 int last);

  const ModelConfig& config() const { return cfg_; }
  const gguf::File& file() const { return *file_; }
  std::shared_ptr<gguf::File> file_ptr() const { return file_; }
  int first_layer() const { return first_; }
  int last_layer() const { return last_; }
  bool has_embedding() const { return first_ == 0; }
  bool has_head() const { return last_ == cfg_.n_layers; }

  const Matrix& tok_embd() const { return tok_embd_; }  // [n_vocab, hidden]; first == 0
  const std::vector<float>& output_norm() const { return output_norm_; }
  const Matrix& output() const { return output_; }  // [n_vocab, hidden]; last == n_layers
  const LayerWeights& layer(int il) const { return layers_[static_cast<size_t>(il - first_)]; }
  // Per-dimension-pair rope divisors [head_dim / 2] (llama3 rope_freqs, linear scaling), or
  // empty when none apply.
  const std::vector<float>& rope_factors() const { return rope_factors_; }

  // Bytes of the weights this range binds (what a run touches).
  uint64_t bound_weight_bytes() const { return bound_bytes_; }
  // Reads the bound weights into memory (from the page cache or the disk) ahead of the first
  // request, so that it does not pay for it; with `progress`, shows it (base/progress.h).
  void PageIn(bool progress) const;
  // Copies the bound matrices the forward pass streams (every layer's, and the output head)
  // out of the file mapping into one anonymous region with transparent huge pages asked for
  // (madvise), and points the matrices at the copies; the embedding, read a row per token,
  // stays mapped unless it is also the output head. Streaming reads on 4 KiB pages lose
  // 15-30% of one core's read bandwidth to TLB misses (measured: 28-35 against 37-40 GB/s
  // on 2 MiB pages). Same bytes, so the same results. With `progress`, shows it.
  // Returns the bytes copied: 0 when the kernel has transparent huge pages switched off
  // (nothing gained then, nothing done); an error when the memory cannot be had (nothing
  // changed then).
  Result<uint64_t> CopyToHugePages(bool progress);
  // Bytes of weights held in the anonymous copy (0: all mapped from the file).
  uint64_t copied_weight_bytes() const { return copied_bytes_; }

 private:
  Model() = default;
  Status Bind();
  Result<Matrix> BindMatrix(const std::string& name, int64_t rows, int64_t cols);
  Result<std::vector<float>> BindVector(const std::string& name, int64_t n, bool optional);

  std::shared_ptr<gguf::File> file_;
  ModelConfig cfg_;
  int first_ = 0, last_ = 0;
  Matrix tok_embd_, output_;
  std::vector<float> output_norm_;
  std::vector<LayerWeights> layers_;
  std::vector<float> rope_factors_;
  uint64_t bound_bytes_ = 0;
  std::vector<std::pair<const uint8_t*, uint64_t>> bound_ranges_;  // mapped matrix data
  std::shared_ptr<uint8_t> copy_;  // CopyToHugePages' region (munmap on release)
  uint64_t copied_bytes_ = 0;
};

// True when the kernel gives transparent huge pages to madvise()d memory (its setting is
// "always" or "madvise", not "never").
bool TransparentHugePagesAvailable();

// Dequantizes row `row` of m into out[m.cols].
void DequantizeMatrixRow(const Matrix& m, int64_t row, float* out);

}  // namespace strata
