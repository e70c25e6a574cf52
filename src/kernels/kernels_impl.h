// Private to src/kernels: the per-ISA kernel tables behind the dispatched entry points.
//
// Each ISA (scalar in kernels_ref.cc, avx2, avx512, neon) provides one IsaKernels table. Weight
// types are described by a TypeKernels entry: the activation format the weights are multiplied
// with, the converter f32 -> that format, and the dot products. Adding a weight type (as Q4_K
// with Q8_K activations was added) means adding one TypeKernels entry to the scalar table
// (mandatory: it defines the result); the avx2/avx512/neon tables may reuse the scalar entry
// until a fast version exists (the NEON table starts from a copy of the scalar one).
#pragma once

#include <cstddef>
#include <cstdint>

#include "tensor/dtype.h"

namespace strata::kernels {
struct KvAttention;  // kernels.h
}  // namespace strata::kernels

namespace strata::kernels::internal {

// f32 -> activation format (n a multiple of that format's block size).
using QuantizeFn = void (*)(const float* x, void* dst, int64_t n);
// dot(w_row, x_row) over n elements.
using VecDotFn = float (*)(int64_t n, const void* w, const void* x);
// A tile of dot products in the GEMM order (see UseGemmOrder): y[i * y_stride + r] =
// dot(w + r * w_stride, x + i * x_stride) for r in [0, nw), i in [0, nx); 1 <= nw <=
// kMaxDotRows, 1 <= nx <= kMaxDotCols; strides of w and x in bytes, of y in floats. Each
// result must not depend on nw, nx or the position in the tile. VecDotFn is the single-token
// order; for Q8_0 the two orders coincide.
using VecDotTileFn = void (*)(int64_t n, const void* w, size_t w_stride, int nw, const void* x,
                              size_t x_stride, int nx, float* y, size_t y_stride);
inline constexpr int kMaxDotRows = 4;
inline constexpr int kMaxDotCols = 4;
// Optional prepared activations for the GEMM-order tile: converts nx (1..kMaxDotCols)
// consecutive rows of vec_dot_type (x_stride bytes apart, n elements each) into one "token
// group" of tile_x_bytes(n) bytes in a layout private to the ISA table. The conversion must be
// exact (it only reformats), so results stay those of vec_dot_tile. dst is 64-byte aligned.
using PrepareTileXFn = void (*)(const void* x, size_t x_stride, int nx, void* dst, int64_t n);
using TileXBytesFn = size_t (*)(int64_t n);

struct TypeKernels {
  DType weight_type;
  DType vec_dot_type;
  QuantizeFn quantize;  // null when vec_dot_type is F32 (activations used as they are)
  VecDotFn vec_dot;
  VecDotTileFn vec_dot_tile;
  // Orders of llama.cpp's repacked kernels (its CPU_REPACK buffer, see UseRepackOrder); null
  // when llama.cpp does not repack this type on x86. repack_tile is the order of its GEMM
  // (groups of 4 tokens), repack_vec_dot that of its GEMV (the other tokens).
  VecDotFn repack_vec_dot = nullptr;
  VecDotTileFn repack_tile = nullptr;
  // Prepared-activation GEMM tile (all three set, or all null = MatMul feeds the tile rows in
  // vec_dot_type). When set, MatMul prepares tokens [4k, 4k + 4) as group k once per call
  // (prepare_tile_x) and calls prepared_tile with x = one group (x_stride = the group size, nx
  // = tokens used from its start). It computes one order, bit for bit: that of repack_tile for
  // the types llama.cpp repacks (repack_vec_dot set), else vec_dot_tile's GEMM order; MatMul
  // uses it only where that order applies and feeds the other tile the rows otherwise.
  PrepareTileXFn prepare_tile_x = nullptr;
  TileXBytesFn tile_x_bytes = nullptr;
  VecDotTileFn prepared_tile = nullptr;
  // Optional tile of repack_vec_dot results (every entry bit-identical to it): MatMul uses it
  // for the tokens the repacked GEMV handles (decode) instead of one row at a time.
  VecDotTileFn repack_gemv_tile = nullptr;
  // For the types of TileMatchesVecDot: also use vec_dot_tile for a single token (decode),
  // where the table's tile is faster than its row-at-a-time vec_dot.
  bool tile_single_token = false;
};

// The signatures of kernels::Attention and kernels::AttentionTiled (kernels.h): the table's
// entries, and what the ISA files declare with them.
using AttentionFn = void(const float* q, const uint16_t* k, const uint16_t* v, int64_t n_kv,
                         int64_t kv_stride, int n_heads, int n_kv_heads, int head_dim, float scale,
                         float* out, float* scratch);
using AttentionTiledFn = void(const float* q, int64_t q_stride, const int32_t* n_vis, int n_q,
                              const uint16_t* k, const uint16_t* v, int64_t kv_stride, int head_dim,
                              float scale, float* out, int64_t out_stride, float* scratch);

// Quantized KV cache (kv_quant.cc): acc[i] += w * row[i] over n elements of a row of type t
// (F32, F16, Q8_0, Q4_0; n a multiple of 32 for the block types), one fma per element; the AVX2
// twin (kernels_kvq_avx2.cc) is bit-identical.
using AccumulateKvRowFn = void (*)(DType t, const void* row, float w, float* acc, int64_t n);

struct IsaKernels {
  const char* name;
  const TypeKernels* types;  // array of n_types entries
  int n_types;
  void (*rms_norm)(const float* x, const float* w, float* y, int64_t n, float eps);
  void (*softmax)(float* x, int64_t n);
  void (*silu_mul)(float* gate, const float* up, int64_t n);
  void (*add)(float* y, const float* x, int64_t n);
  AttentionFn* attention;
  // kernels::AttentionTiled for head_dim a multiple of 16 up to 128; null: none on this path.
  AttentionTiledFn* attention_tiled = nullptr;
  // kernels::AttentionKvPartial for the types and shapes it covers (false, having done nothing:
  // the generic chunk runs); null: none on this path.
  bool (*attention_kv_partial)(const KvAttention& a, const float* q, float* partial,
                               float* scratch) = nullptr;
  // kernels::MergeAttentionPartials, bit-identical to MergeAttentionPartialsRef; null: that one.
  void (*merge_partials)(const float* partials, int64_t n_chunks, int n_heads, int head_dim,
                         float* out) = nullptr;
  // The quantized KV cache's row accumulation, bit-identical to AccumulateKvRow; null: that one.
  AccumulateKvRowFn accumulate_kv_row = nullptr;
};

// Which accumulation order a matmul uses, as llama.cpp decides it: its GEMM (llamafile's
// tinyBLAS) for two or more tokens when the row count is a multiple of 4 and the row length a
// multiple of the GEMM's step; otherwise its per-row vec_dot. The two orders differ in the
// last bits, so following the same rule keeps results identical to llama.cpp's.
inline bool UseGemmOrder(DType w, int64_t rows, int64_t cols, int64_t n_tok) {
  // tinyBLAS has no K-quant kernels: llama.cpp runs them with vec_dot at every batch size.
  if (w == DType::Q4_K || w == DType::Q5_K || w == DType::Q6_K) return false;
  const int64_t step = w == DType::F32 || w == DType::F16 ? 16 : 32;
  return n_tok >= 2 && rows % 4 == 0 && cols % step == 0;
}

// llama.cpp (x86, AVX2 and up; node-llama-cpp keeps its default use_extra_bufts = true) moves
// 2-D Q4_0 and Q4_K matmul weights with a row count divisible by 8 into its CPU_REPACK buffer,
// interleaving 8 rows, and multiplies them with dedicated kernels of their own order (this
// takes precedence over tinyBLAS and vec_dot). Those kernels run a GEMM over each group of 4
// tokens and a GEMV over the last n_tok % 4 tokens.
// Types whose vec_dot_tile computes every (row, token) entry exactly like vec_dot (llama.cpp
// runs them with vec_dot at every batch size): tiles only save loads and unpacking.
inline bool TileMatchesVecDot(DType w) {
  return w == DType::Q4_K || w == DType::Q5_K || w == DType::Q6_K;
}

inline bool UseRepackOrder(const TypeKernels& t, int64_t rows) {
  return t.repack_vec_dot != nullptr && rows % 8 == 0;
}
// Tokens [0, RepackGemmTokens(n_tok)) use repack_tile, the others repack_vec_dot.
inline int64_t RepackGemmTokens(int64_t n_tok) { return n_tok - n_tok % 4; }

// Scalar twins of the 4/5/6-bit kernels (kernels_lowbit_ref.cc; orders documented there).
void QuantizeQ8K(const float* x, void* dst, int64_t n);
float DotQ4_0Plain(int64_t n, const void* w, const void* x);
float DotQ4_0Repack(int64_t n, const void* w, const void* x);
float DotQ4_KPlain(int64_t n, const void* w, const void* x);
float DotQ4_KRepackGemv(int64_t n, const void* w, const void* x);
float DotQ4_KRepackGemm(int64_t n, const void* w, const void* x);
float DotQ5_KPlain(int64_t n, const void* w, const void* x);
float DotQ6_KPlain(int64_t n, const void* w, const void* x);

// AVX2 versions of the above, bit-identical to them (kernels_lowbit_avx2.cc; call only when
// the CPU has AVX2+FMA+F16C). Both SIMD tables use them.
namespace lowbit_avx2 {
float DotQ4_0Plain(int64_t n, const void* w, const void* x);
float DotQ4_0Repack(int64_t n, const void* w, const void* x);
void TileQ4_0Repack(int64_t n, const void* w, size_t ws, int nw, const void* x, size_t xs, int nx,
                    float* y, size_t ys);
float DotQ4_KPlain(int64_t n, const void* w, const void* x);
float DotQ4_KRepackGemv(int64_t n, const void* w, const void* x);
float DotQ4_KRepackGemm(int64_t n, const void* w, const void* x);
// Tile of DotQ4_KRepackGemm results (each entry bit-identical to it), register-tiled.
void TileQ4_KRepackGemm(int64_t n, const void* w, size_t ws, int nw, const void* x, size_t xs,
                        int nx, float* y, size_t ys);
float DotQ5_KPlain(int64_t n, const void* w, const void* x);
float DotQ6_KPlain(int64_t n, const void* w, const void* x);
// Tile of DotQ6_KPlain results (each entry bit-identical to it), weights unpacked once per
// block for up to 4 tokens.
void TileQ6_K(int64_t n, const void* w, size_t ws, int nw, const void* x, size_t xs, int nx,
              float* y, size_t ys);
}  // namespace lowbit_avx2

// AVX-512 (F/BW/VL/DQ/VNNI) versions of the low-bit kernels, bit-identical to the scalar
// twins (kernels_q4_0_avx512.cc, kernels_q4_k_gemm_avx512.cc, kernels_q4_k_gemv_avx512.cc,
// kernels_q6_k_avx512.cc).
namespace lowbit_avx512 {
// DotQ4_0Repack (llama.cpp's repacked Q4_0 order) and a tile of its results, for its GEMM and
// GEMV alike (kernels_q4_0_avx512.cc).
float DotQ4_0Repack(int64_t n, const void* w, const void* x);
void TileQ4_0Repack(int64_t n, const void* w, size_t ws, int nw, const void* x, size_t xs, int nx,
                    float* y, size_t ys);
// The repacked GEMM order over prepared activations.
void Q4_0PrepareTileX(const void* x, size_t xs, int nx, void* dst, int64_t n);
size_t Q4_0TileXBytes(int64_t n);
void Q4_0PreparedTile(int64_t n, const void* w, size_t ws, int nw, const void* x, size_t xs, int nx,
                      float* y, size_t ys);
// Tile of DotQ4_KRepackGemm results (llama.cpp's repacked GEMM order, groups of 4 tokens).
void TileQ4_KRepackGemm(int64_t n, const void* w, size_t ws, int nw, const void* x, size_t xs,
                        int nx, float* y, size_t ys);
// The same over prepared activations (TypeKernels::prepare_tile_x / tile_x_bytes / prepared_tile).
void Q4_KPrepareTileX(const void* x, size_t xs, int nx, void* dst, int64_t n);
size_t Q4_KTileXBytes(int64_t n);
void Q4_KPreparedTile(int64_t n, const void* w, size_t ws, int nw, const void* x, size_t xs, int nx,
                      float* y, size_t ys);
// DotQ4_KRepackGemv and a tile of its results (decode).
float DotQ4_KRepackGemv(int64_t n, const void* w, const void* x);
void TileQ4_KRepackGemv(int64_t n, const void* w, size_t ws, int nw, const void* x, size_t xs,
                        int nx, float* y, size_t ys);
// DotQ6_KPlain and a tile of its results.
float DotQ6_KPlain(int64_t n, const void* w, const void* x);
void TileQ6_K(int64_t n, const void* w, size_t ws, int nw, const void* x, size_t xs, int nx,
              float* y, size_t ys);
}  // namespace lowbit_avx512

// A VecDotTileFn computing each entry of the tile with `kDot`.
template <VecDotFn kDot>
void PerEntryTile(int64_t n, const void* w, size_t ws, int nw, const void* x, size_t xs, int nx,
                  float* y, size_t ys) {
  for (int i = 0; i < nx; ++i)
    for (int r = 0; r < nw; ++r)
      y[i * ys + r] =
          kDot(n, static_cast<const uint8_t*>(w) + r * ws, static_cast<const uint8_t*>(x) + i * xs);
}

// The TypeKernels entries of the 4/5/6-bit types for the SIMD tables; `q8_0` is the table's
// Q8_0 activation quantizer.
#define STRATA_LB_ ::strata::kernels::internal
#define STRATA_LOWBIT_SIMD_TYPES(q8_0)                                                           \
  {DType::Q4_0,                                                                                  \
   DType::Q8_0,                                                                                  \
   q8_0,                                                                                         \
   STRATA_LB_::lowbit_avx2::DotQ4_0Plain,                                                        \
   STRATA_LB_::PerEntryTile<STRATA_LB_::lowbit_avx2::DotQ4_0Plain>,                              \
   STRATA_LB_::lowbit_avx2::DotQ4_0Repack,                                                       \
   STRATA_LB_::lowbit_avx2::TileQ4_0Repack},                                                     \
      {DType::Q4_K,                                                                              \
       DType::Q8_K,                                                                              \
       STRATA_LB_::QuantizeQ8K,                                                                  \
       STRATA_LB_::lowbit_avx2::DotQ4_KPlain,                                                    \
       STRATA_LB_::PerEntryTile<STRATA_LB_::lowbit_avx2::DotQ4_KPlain>,                          \
       STRATA_LB_::lowbit_avx2::DotQ4_KRepackGemv,                                               \
       STRATA_LB_::lowbit_avx2::TileQ4_KRepackGemm},                                             \
      {DType::Q5_K, DType::Q8_K, STRATA_LB_::QuantizeQ8K, STRATA_LB_::lowbit_avx2::DotQ5_KPlain, \
       STRATA_LB_::PerEntryTile<STRATA_LB_::lowbit_avx2::DotQ5_KPlain>},                         \
  {                                                                                              \
    DType::Q6_K, DType::Q8_K, STRATA_LB_::QuantizeQ8K, STRATA_LB_::lowbit_avx2::DotQ6_KPlain,    \
        STRATA_LB_::lowbit_avx2::TileQ6_K                                                        \
  }

void AccumulateKvRow(DType t, const void* row, float w, float* acc, int64_t n);
void AccumulateKvRowAvx2(DType t, const void* row, float w, float* acc, int64_t n);
void QuantizeKvRowWith(const IsaKernels& isa, DType t, const float* x, void* dst, int64_t n);
void AttentionKvWith(const IsaKernels& isa, AccumulateKvRowFn accumulate, const KvAttention& a,
                     const float* q, float* out, float* scratch);
void AttentionKvPartialWith(const IsaKernels& isa, AccumulateKvRowFn accumulate,
                            const KvAttention& a, const float* q, float* partial, float* scratch);

// Null when the ISA table has no entry for `w`.
inline const TypeKernels* FindType(const IsaKernels& isa, DType w) {
  for (int i = 0; i < isa.n_types; ++i)
    if (isa.types[i].weight_type == w) return &isa.types[i];
  return nullptr;
}

// QuantizeActivationRow and VecDot through the entry of `w` in an ISA table (kernels.cc).
// Without one: nothing is written, and the dot is NaN.
void QuantizeActivationRowWith(const IsaKernels& isa, DType w, const float* x, void* dst,
                               int64_t n);
float VecDotWith(const IsaKernels& isa, DType w, int64_t n, const void* w_row, const void* x_row);

const IsaKernels& ScalarKernels();  // kernels_ref.cc
const IsaKernels& Avx2Kernels();    // kernels_avx2.cc (call only when the CPU has AVX2+FMA+F16C)
const IsaKernels& Avx512Kernels();  // kernels_avx512.cc (call only with AVX-512 F/BW/VL/DQ/VNNI)
const IsaKernels& NeonKernels();    // kernels_neon.cc (aarch64 builds only)

}  // namespace strata::kernels::internal

namespace strata::kernels::internal {

// Building VecDotFn / VecDotTileFn from a fixed-size kernel family K, which provides
//   template <int NR, int NX> static void Run(int64_t n, const uint8_t* w, size_t w_stride,
//                                             const uint8_t* x, size_t x_stride, float* out);
// computing out[i * NR + r] = dot(row r of w, row i of x) for NR weight rows and NX tokens.
template <class K>
float VecDotOne(int64_t n, const void* w, const void* x) {
  float out;
  K::template Run<1, 1>(n, static_cast<const uint8_t*>(w), 0, static_cast<const uint8_t*>(x), 0,
                        &out);
  return out;
}

template <class K, int NR>
void VecDotTileRows(int64_t n, const uint8_t* w, size_t ws, const uint8_t* x, size_t xs, int nx,
                    float* y, size_t ys) {
  float out[NR * kMaxDotCols];
  int i = 0;
  auto put = [&](int cnt) {
    for (int a = 0; a < cnt; ++a)
      for (int r = 0; r < NR; ++r) y[(i + a) * ys + r] = out[a * NR + r];
    i += cnt;
  };
  while (i + 4 <= nx) {  // NOLINT(bugprone-infinite-loop): put() advances i
    K::template Run<NR, 4>(n, w, ws, x + i * xs, xs, out);
    put(4);
  }
  if (i + 2 <= nx) {
    K::template Run<NR, 2>(n, w, ws, x + i * xs, xs, out);
    put(2);
  }
  if (i < nx) {
    K::template Run<NR, 1>(n, w, ws, x + i * xs, xs, out);
    put(1);
  }
}

template <class K>
void VecDotTile(int64_t n, const void* w, size_t ws, int nw, const void* x, size_t xs, int nx,
                float* y, size_t ys) {
  static_assert(kMaxDotRows == 4 && kMaxDotCols == 4, "VecDotTile handles 1-4 rows, 1-4 tokens");
  const uint8_t* wp = static_cast<const uint8_t*>(w);
  const uint8_t* xp = static_cast<const uint8_t*>(x);
  switch (nw) {
    case 4: VecDotTileRows<K, 4>(n, wp, ws, xp, xs, nx, y, ys); break;
    case 3:
      VecDotTileRows<K, 2>(n, wp, ws, xp, xs, nx, y, ys);
      VecDotTileRows<K, 1>(n, wp + 2 * ws, ws, xp, xs, nx, y + 2, ys);
      break;
    case 2: VecDotTileRows<K, 2>(n, wp, ws, xp, xs, nx, y, ys); break;
    default: VecDotTileRows<K, 1>(n, wp, ws, xp, xs, nx, y, ys);
  }
}

}  // namespace strata::kernels::internal

namespace strata::kernels::avx512 {
// kernels::Attention and kernels::AttentionTiled (kernels_attn_avx512.cc).
internal::AttentionFn Attention;
internal::AttentionTiledFn AttentionTiled;
// kernels::AttentionKvPartial for F16 and Q8_0 keys and values, in any combination
// (kernels_attn_avx512.cc): false, having done nothing, for the types and shapes it does not
// cover (Q4_0; the caller then runs the generic chunk).
bool AttentionKvPartialFast(const KvAttention& a, const float* q, float* partial, float* scratch);
// The scores of one split-KV chunk for Q8_0 keys, bit-identical to ref::SplitScoresQ8.
void SplitScoresQ8(const BlockQ8_0* qx, int nh, int nb, const uint8_t* k, size_t k_row,
                   int64_t n_kv, float scale, float* s);
// kernels::MergeAttentionPartials, bit-identical to internal::MergeAttentionPartialsRef.
void MergeAttentionPartials(const float* partials, int64_t n_chunks, int n_heads, int head_dim,
                            float* out);
}  // namespace strata::kernels::avx512

namespace strata::kernels::ref {
// Scores of one split-KV chunk (n_kv <= kSplitKvChunk keys) for Q8_0 keys of nb blocks:
// s[h * kSplitKvChunk + j] = scale * (sum over blocks b, in order, as
// acc = fma(dk[j][b] * dq[h][b], float(exact integer dot of the block's quants), acc)).
//   qx: [nh][nb] the queries quantized as Q8_0 blocks; key j's blocks at k + j * k_row
void SplitScoresQ8(const BlockQ8_0* qx, int nh, int nb, const uint8_t* k, size_t k_row,
                   int64_t n_kv, float scale, float* s);
}  // namespace strata::kernels::ref

namespace strata::kernels::internal {
// kernels::MergeAttentionPartials in plain C++ (kernels.cc): the order every path keeps.
void MergeAttentionPartialsRef(const float* partials, int64_t n_chunks, int n_heads, int head_dim,
                               float* out);
}  // namespace strata::kernels::internal
