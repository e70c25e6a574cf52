// Compute kernels of the forward pass. Each has a plain scalar twin in namespace ref
// (kernels_ref.cc) that defines its result; the dispatched versions pick the best SIMD path
// for this CPU at run time (x86-64: AVX-512, else AVX2, else scalar; aarch64: NEON; see
// kernels.cc's Best()) and are tested against the twins.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "base/thread_pool.h"
#include "tensor/dtype.h"

namespace strata::kernels {

// ---- Weight x activation products --------------------------------------------------------
// As in ggml, a weight row of type W is multiplied with an activation row converted to
// VecDotType(W): F32->F32, F16->F16, BF16->BF16, Q8_0->Q8_0, Q4_0->Q8_0, and
// Q4_K/Q5_K/Q6_K->Q8_K.
DType VecDotType(DType weight_type);

// Converts n floats to the vec-dot format for `weight_type`; dst holds
// RowBytes(VecDotType(weight_type), n) bytes.
void QuantizeActivationRow(DType weight_type, const float* x, void* dst, int64_t n);

// dot(w_row, x_row): w_row in weight_type, x_row in VecDotType(weight_type).
float VecDot(DType weight_type, int64_t n, const void* w_row, const void* x_row);

// Y[t, r] = sum_c W[r, c] * X[t, c]
//   W: [rows, cols] in w_type, rows contiguous (RowBytes(w_type, cols) each)
//   X: [n_tok, cols] f32, Y: [n_tok, rows] f32
// Rows are split across the pool's threads. `scratch` is grown as needed and reused.
// The accumulation order of each result is the one llama.cpp's CPU backend would use for the
// same shape (see kernels_impl.h: tinyBLAS, vec_dot, or its repacked Q4_0/Q4_K kernels), so a
// single-token result may differ in the last bits from VecDot for repacked types.
void MatMul(const void* W, DType w_type, int64_t rows, int64_t cols, const float* X, int64_t n_tok,
            float* Y, ThreadPool* pool, std::vector<uint8_t>* scratch);

// ---- Element-wise and row kernels ------------------------------------------------------
// y = x / sqrt(mean(x^2) + eps) * w    (y may alias x)
void RmsNorm(const float* x, const float* w, float* y, int64_t n, float eps);

// Rotary embedding applied in place to n_heads vectors of head_dim at position pos.
//   neox = false: rotates pairs (2i, 2i+1)   (llama in GGUF)
//   neox = true:  rotates pairs (i, i + head_dim/2)   (qwen2)
// theta_i = pos * base^(-2i/head_dim) / freq_factors[i]  (freq_factors may be null),
// computed like ggml (running product of base^(-2/head_dim)) for bit-compatibility.
void Rope(float* x, int64_t n_heads, int64_t head_dim, int32_t pos, float base,
          const float* freq_factors, bool neox);

// In-place numerically stable softmax.
void Softmax(float* x, int64_t n);

// gate[i] = silu(gate[i]) * up[i]
void SiluMul(float* gate, const float* up, int64_t n);

// y[i] += x[i]
void Add(float* y, const float* x, int64_t n);

// Largest head dimension Attention supports.
constexpr int kMaxHeadDim = 1024;

// Attention of one query token over n_kv cached positions of one sequence (causality is the
// caller's: pass only the visible positions). Numerics follow llama.cpp's CPU flash attention
// (what llama.cpp runs by default), so that outputs match it token for token: q is rounded to
// f16, keys are visited once with an online softmax, and the weighted sum of values is kept in
// f16, rounded after every step; the result is that sum times 1/(sum of weights).
//   q:   [n_heads, head_dim] f32
//   k,v: [n_kv, kv_stride] f16, head h uses kv head h / (n_heads / n_kv_heads) at column
//        offset kvh * head_dim
//   out: [n_heads, head_dim] f32
//   scratch: not used by any path (may be null); kept so that the per-query and the tiled
//            attention share one calling convention
void Attention(const float* q, const uint16_t* k, const uint16_t* v, int64_t n_kv,
               int64_t kv_stride, int n_heads, int n_kv_heads, int head_dim, float scale,
               float* out, float* scratch);

// Prompt attention in the order of llama.cpp's tiled CPU flash attention, which llama.cpp runs
// instead of Attention's per-query order when a batch has at least kTiledAttentionMinBatch
// tokens. For n_q query rows of ONE head (1 <= n_q <= kTiledAttentionRows), row i seeing keys
// 0..n_vis[i]-1: keys in tiles of 64 from position 0; per tile q.k in f32 (q not rounded), a
// sequential fma over the head dimension, times scale; the tile maximum updates the running
// max (rescale by expf), the weights use llama.cpp's polynomial exp with their sum per 16
// lanes added in double; values accumulate in f32, a sequential fma over the tile's keys;
// finally times 1/(sum of weights). Each row's result depends only on its own q and n_vis.
//   q:   [n_q, q_stride] f32 (this head's slice of each row)
//   k,v: [*, kv_stride] f16, starting at this head's KV column
//   out: [n_q, out_stride] f32
//   scratch: AttentionTiledScratch(head_dim) floats, 64-byte aligned
constexpr int kTiledAttentionMinBatch = 64;
constexpr int kTiledAttentionRows = 64;
int64_t AttentionTiledScratch(int head_dim);
// False when the active path has no fast tiled kernel (the caller then uses Attention; results
// differ from llama.cpp's in the last bits for large batches, as they do on such CPUs anyway).
bool HasTiledAttention(int head_dim);
void AttentionTiled(const float* q, int64_t q_stride, const int32_t* n_vis, int n_q,
                    const uint16_t* k, const uint16_t* v, int64_t kv_stride, int head_dim,
                    float scale, float* out, int64_t out_stride, float* scratch);

// Attention of query heads over ONE KV head of a KV cache of any type (model/kv_cache.h:
// F16, Q8_0 or Q4_0 keys and values). Used when the cache is quantized (an all-F16 cache keeps
// Attention / AttentionTiled and their llama.cpp-identical numerics). Scores: the key type's
// dot product with the query in its activation format (Q8_0 for the block types), times
// scale; one softmax over them (Softmax's); values accumulated in f32 with those weights.
constexpr int kMaxAttnHeads = 16;  // query heads per KV head AttentionKv supports
struct KvAttention {
  const void* k = nullptr;  // this KV head's keys of position 0; position j at + j * k_row_bytes
  DType k_type = DType::F16;
  size_t k_row_bytes = 0;
  const void* v = nullptr;  // likewise for the values
  DType v_type = DType::F16;
  size_t v_row_bytes = 0;
  int64_t n_kv = 0;  // visible positions (>= 1)
  int n_heads = 1;   // query heads sharing this KV head (<= kMaxAttnHeads), one after the
                     // other in q / out
  int head_dim = 0;  // a multiple of 32 for the block types, <= kMaxHeadDim
  float scale = 1.0f;
};
//   q, out: [n_heads, head_dim] f32; scratch: n_heads * n_kv floats
void AttentionKv(const KvAttention& a, const float* q, float* out, float* scratch);
// One position's keys or values (n elements) in the KV cache's type t.
void QuantizeKvRow(DType t, const float* x, void* dst, int64_t n);

// Split-KV ("flash-decoding") attention of one query token over a long context, for any KV
// cache type (F16 included). The visible positions [0, n_kv) are cut into chunks of
// kSplitKvChunk from position 0; AttentionKvPartial turns one chunk into a partial result per
// query head, and MergeAttentionPartials combines a row's partials in chunk order. The chunks
// can run on different threads: the result depends only on the inputs and n_kv, never on which
// thread ran which chunk or on the thread count. The model uses it for rows that see at least
// kSplitKvMinKv positions (llama.cpp splits its decode attention from 512 keys as well; below
// that the per-query kernels keep their llama.cpp-identical numerics).
//   Chunk numerics: scores as AttentionKv's (the key type's dot product with the query in
//   its activation format: f16-rounded for F16 keys), times scale; m = their maximum;
//   weights ExpPoly(s - m) and their sum; acc = sum of weight * value in f32.
constexpr int64_t kSplitKvMinKv = 512;
constexpr int64_t kSplitKvChunk = 256;
inline int64_t SplitKvChunks(int64_t n_kv) { return (n_kv + kSplitKvChunk - 1) / kSplitKvChunk; }
// Floats per (chunk, query head) partial: head_dim accumulators, then m and the sum; padded so
// that every partial starts 64-byte aligned when the buffer does.
inline int64_t AttentionPartialStride(int head_dim) { return (head_dim + 2 + 15) / 16 * 16; }
//   a: one chunk (a.k / a.v at its first position, 1 <= a.n_kv <= kSplitKvChunk)
//   q: [a.n_heads, head_dim] f32; partial: [a.n_heads, AttentionPartialStride] f32
//   scratch: a.n_heads * kSplitKvChunk floats
void AttentionKvPartial(const KvAttention& a, const float* q, float* partial, float* scratch);
// out[h] = (sum over chunks c of e_c * acc[c][h]) / (sum of e_c * sum[c][h]) with
// e_c = exp(m[c][h] - max over c of m[c][h]); sums in chunk order.
//   partials: [n_chunks, n_heads, AttentionPartialStride(head_dim)]; out: [n_heads, head_dim]
void MergeAttentionPartials(const float* partials, int64_t n_chunks, int n_heads, int head_dim,
                            float* out);

// Name of the SIMD path chosen at run time ("avx512", "avx2", "scalar"; "neon" on aarch64).
const char* ActivePath();

// True when MatMul / VecDot / QuantizeActivationRow support weights of type t
// (currently F32, F16, BF16, Q8_0, Q4_0, Q4_K, Q5_K, Q6_K). For other types MatMul fills Y
// with NaN.
bool SupportsWeightType(DType t);

// ---- Testing hooks ------------------------------------------------------------------------
// Paths this CPU can run, best first; always ends with "scalar".
std::vector<std::string> SupportedPaths();
// Routes all dispatched kernels to `path` ("avx512", "avx2", "neon", "scalar"). Returns false (and
// changes nothing) when the path is unknown or this CPU lacks it. Not safe to call while
// kernels run on other threads.
bool SetPathForTesting(const char* path);

namespace ref {
void QuantizeActivationRow(DType weight_type, const float* x, void* dst, int64_t n);
float VecDot(DType weight_type, int64_t n, const void* w_row, const void* x_row);
void MatMul(const void* W, DType w_type, int64_t rows, int64_t cols, const float* X, int64_t n_tok,
            float* Y);
void RmsNorm(const float* x, const float* w, float* y, int64_t n, float eps);
void Rope(float* x, int64_t n_heads, int64_t head_dim, int32_t pos, float base,
          const float* freq_factors, bool neox);
void Softmax(float* x, int64_t n);
void SiluMul(float* gate, const float* up, int64_t n);
// The exp and SiLU of llama.cpp's vector path (SiluMul uses them for whole groups of 16).
float ExpPoly(float x);
float SiluPoly(float g);
void Attention(const float* q, const uint16_t* k, const uint16_t* v, int64_t n_kv,
               int64_t kv_stride, int n_heads, int n_kv_heads, int head_dim, float scale,
               float* out, float* scratch);
void AttentionTiled(const float* q, int64_t q_stride, const int32_t* n_vis, int n_q,
                    const uint16_t* k, const uint16_t* v, int64_t kv_stride, int head_dim,
                    float scale, float* out, int64_t out_stride, float* scratch);
void AttentionKv(const KvAttention& a, const float* q, float* out, float* scratch);
void QuantizeKvRow(DType t, const float* x, void* dst, int64_t n);
void AttentionKvPartial(const KvAttention& a, const float* q, float* partial, float* scratch);
}  // namespace ref

}  // namespace strata::kernels
