// Run-time dispatch of the kernels to the best SIMD path, and the threaded MatMul driver.
#include "kernels/kernels.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <limits>

#include "kernels/kernels_impl.h"

#if defined(__x86_64__)
#include <cpuid.h>
#endif

namespace strata::kernels {
namespace {

using internal::IsaKernels;
using internal::TypeKernels;

// The x86 files are built only for x86-64 and the NEON file only for aarch64
// (src/kernels/CMakeLists.txt); other targets have the scalar path alone.
#if defined(__x86_64__)
// F16C from CPUID leaf 1 (ECX bit 29): not every compiler's __builtin_cpu_supports knows
// "f16c" (clang before 15 does not); it shares AVX's register state, checked with avx2.
bool CpuHasF16c() {
  unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
  return __get_cpuid(1, &eax, &ebx, &ecx, &edx) != 0 && (ecx & bit_F16C) != 0;
}

bool CpuHasAvx2() {
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && CpuHasF16c();
}

bool CpuHasAvx512() {
  return CpuHasAvx2() && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
         __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") &&
         __builtin_cpu_supports("avx512vnni") && __builtin_cpu_supports("avx512bf16");
}
#endif

const IsaKernels* Best() {
#if defined(__x86_64__)
  if (CpuHasAvx512()) return &internal::Avx512Kernels();
  if (CpuHasAvx2()) return &internal::Avx2Kernels();
#elif defined(__aarch64__)
  return &internal::NeonKernels();  // NEON is part of ARMv8-A
#endif
  return &internal::ScalarKernels();
}

std::atomic<const IsaKernels*> g_active{nullptr};

const IsaKernels& Active() {
  const IsaKernels* k = g_active.load(std::memory_order_acquire);
  if (k == nullptr) {
    k = Best();
    g_active.store(k, std::memory_order_release);
  }
  return *k;
}

// Cache-blocking sizes for MatMul with several tokens: a tile of weight rows and a tile of
// activation rows, each about this many bytes, so both stay in L2 while they are combined.
constexpr size_t kTileBytes = 256 * 1024;

struct MatMulJob {
  const TypeKernels* tk;
  const uint8_t* w;  // [rows, w_row]
  size_t w_row;
  const uint8_t* x;  // [n_tok, x_row] activations in tk->vec_dot_type
  size_t x_row;
  int64_t rows, cols, n_tok;
  bool gemm;    // GEMM accumulation order (internal::UseGemmOrder), else per-row vec_dot
  bool repack;  // llama.cpp's repacked-weight orders (internal::UseRepackOrder) override both
  float* y;     // [n_tok, rows]
  // GEMM order with prepared activations (tk->prepared_tile): groups of kMaxDotCols tokens.
  const uint8_t* xg = nullptr;  // [ceil(n_tok / kMaxDotCols), x_group]
  size_t x_group = 0;
};

// Y rows [r_begin, r_end) of tokens [t_begin, t_end), one weight row at a time with `dot`:
// a single sequential weight stream is what the hardware prefetcher handles best (measured:
// 2-row tiles were ~1.6x slower on a 15 MB Q8_0 matrix).
void RowsByVecDot(const MatMulJob& j, internal::VecDotFn dot, int64_t t_begin, int64_t t_end,
                  int64_t r_begin, int64_t r_end) {
  for (int64_t t = t_begin; t < t_end; ++t)
    for (int64_t r = r_begin; r < r_end; ++r)
      j.y[t * j.rows + r] = dot(j.cols, j.w + r * j.w_row, j.x + t * j.x_row);
}

// The same with `tile`, in register tiles of up to kMaxDotRows weight rows x kMaxDotCols
// tokens, inside cache tiles of rb rows x tb tokens; `groups`: the tile reads the prepared
// token groups j.xg (t_begin a multiple of kMaxDotCols) instead of the rows j.x.
void RowsByTiles(const MatMulJob& j, internal::VecDotTileFn tile, bool groups, int64_t t_begin,
                 int64_t t_end, int64_t r_begin, int64_t r_end) {
  constexpr int kR = internal::kMaxDotRows;
  constexpr int kC = internal::kMaxDotCols;
  const size_t ys = static_cast<size_t>(j.rows);
  const int64_t rb = std::max<int64_t>(kR, static_cast<int64_t>(kTileBytes / j.w_row) / kR * kR);
  const int64_t tb = std::max<int64_t>(kC, static_cast<int64_t>(kTileBytes / j.x_row) / kC * kC);
  for (int64_t r0 = r_begin; r0 < r_end; r0 += rb) {
    const int64_t r1 = std::min(r_end, r0 + rb);
    for (int64_t t0 = t_begin; t0 < t_end; t0 += tb) {
      const int64_t t1 = std::min(t_end, t0 + tb);
      for (int64_t r = r0; r < r1; r += kR) {
        const int nw = static_cast<int>(std::min<int64_t>(kR, r1 - r));
        for (int64_t t = t0; t < t1; t += kC) {
          const int nx = static_cast<int>(std::min<int64_t>(kC, t1 - t));
          if (groups) {  // t is a multiple of kC: tile = one prepared group
            tile(j.cols, j.w + r * j.w_row, j.w_row, nw, j.xg + t / kC * j.x_group, j.x_group, nx,
                 j.y + t * j.rows + r, ys);
          } else {
            tile(j.cols, j.w + r * j.w_row, j.w_row, nw, j.x + t * j.x_row, j.x_row, nx,
                 j.y + t * j.rows + r, ys);
          }
        }
      }
    }
  }
}

// Computes Y rows [r_begin, r_end) for all tokens, in the order llama.cpp would use.
void MatMulRange(const MatMulJob& j, int64_t r_begin, int64_t r_end) {
  if (j.repack) {
    const int64_t n_gemm = internal::RepackGemmTokens(j.n_tok);
    const bool groups = j.xg != nullptr;
    if (n_gemm > 0)
      RowsByTiles(j, groups ? j.tk->prepared_tile : j.tk->repack_tile, groups, 0, n_gemm, r_begin,
                  r_end);
    if (j.tk->repack_gemv_tile != nullptr) {
      RowsByTiles(j, j.tk->repack_gemv_tile, false, n_gemm, j.n_tok, r_begin, r_end);
    } else {
      RowsByVecDot(j, j.tk->repack_vec_dot, n_gemm, j.n_tok, r_begin, r_end);
    }
  } else if (j.gemm) {
    const bool groups = j.xg != nullptr;
    RowsByTiles(j, groups ? j.tk->prepared_tile : j.tk->vec_dot_tile, groups, 0, j.n_tok, r_begin,
                r_end);
  } else if ((j.n_tok >= 2 || j.tk->tile_single_token) &&
             internal::TileMatchesVecDot(j.tk->weight_type) && j.tk->vec_dot_tile != nullptr) {
    RowsByTiles(j, j.tk->vec_dot_tile, false, 0, j.n_tok, r_begin, r_end);  // per-entry order
  } else {
    RowsByVecDot(j, j.tk->vec_dot, 0, j.n_tok, r_begin, r_end);
  }
}

struct QuantizeJob {
  const TypeKernels* tk;
  const float* X;
  int64_t cols;
  uint8_t* dst;
  size_t x_row;
};

}  // namespace

DType VecDotType(DType weight_type) {
  const TypeKernels* t = internal::FindType(internal::ScalarKernels(), weight_type);
  return t != nullptr ? t->vec_dot_type : weight_type;
}

bool SupportsWeightType(DType t) {
  return internal::FindType(internal::ScalarKernels(), t) != nullptr;
}

void QuantizeActivationRow(DType weight_type, const float* x, void* dst, int64_t n) {
  internal::QuantizeActivationRowWith(Active(), weight_type, x, dst, n);
}

float VecDot(DType weight_type, int64_t n, const void* w_row, const void* x_row) {
  return internal::VecDotWith(Active(), weight_type, n, w_row, x_row);
}

namespace internal {

void QuantizeActivationRowWith(const IsaKernels& isa, DType w, const float* x, void* dst,
                               int64_t n) {
  const TypeKernels* t = FindType(isa, w);
  if (t == nullptr) return;
  if (t->quantize == nullptr) {
    std::memcpy(dst, x, static_cast<size_t>(n) * sizeof(float));
  } else {
    t->quantize(x, dst, n);
  }
}

float VecDotWith(const IsaKernels& isa, DType w, int64_t n, const void* w_row, const void* x_row) {
  const TypeKernels* t = FindType(isa, w);
  if (t == nullptr) return std::numeric_limits<float>::quiet_NaN();
  return t->vec_dot(n, w_row, x_row);
}

}  // namespace internal

void MatMul(const void* W, DType w_type, int64_t rows, int64_t cols, const float* X, int64_t n_tok,
            float* Y, ThreadPool* pool, std::vector<uint8_t>* scratch) {
  if (rows <= 0 || n_tok <= 0) return;
  const TypeKernels* tk = internal::FindType(Active(), w_type);
  if (tk == nullptr) {
    std::fill(Y, Y + rows * n_tok, std::numeric_limits<float>::quiet_NaN());
    return;
  }
  MatMulJob job;
  job.tk = tk;
  job.w = static_cast<const uint8_t*>(W);
  job.w_row = RowBytesUnchecked(w_type, cols);
  job.rows = rows;
  job.cols = cols;
  job.n_tok = n_tok;
  job.gemm = internal::UseGemmOrder(w_type, rows, cols, n_tok);
  job.repack = internal::UseRepackOrder(*tk, rows);
  job.y = Y;
  const int nth = pool != nullptr ? pool->size() : 1;

  // 1. Activations -> vec-dot format, once per token row.
  if (tk->quantize == nullptr) {
    job.x = reinterpret_cast<const uint8_t*>(X);
    job.x_row = static_cast<size_t>(cols) * sizeof(float);
  } else {
    job.x_row = RowBytesUnchecked(tk->vec_dot_type, cols);
    const size_t need = job.x_row * static_cast<size_t>(n_tok);
    // Prepared groups for the tokens of the GEMM tiles: all of them in the GEMM order, the
    // full groups of 4 in the repacked order (its GEMV takes the rest).
    const int64_t n_prep = job.repack ? internal::RepackGemmTokens(n_tok) : job.gemm ? n_tok : 0;
    // (The prepared tile has the repacked order for types that have one: see TypeKernels.)
    const bool prepared =
        n_prep > 0 && tk->prepared_tile != nullptr && (job.repack || tk->repack_vec_dot == nullptr);
    const int64_t n_groups = (n_prep + internal::kMaxDotCols - 1) / internal::kMaxDotCols;
    if (prepared) job.x_group = (tk->tile_x_bytes(cols) + 63) / 64 * 64;
    // Prepared groups after the rows, 64-byte aligned.
    const size_t total = prepared ? need + 64 + job.x_group * static_cast<size_t>(n_groups) : need;
    if (scratch->size() < total) scratch->resize(total);
    QuantizeJob qj{tk, X, cols, scratch->data(), job.x_row};
    if (nth == 1 || n_tok < 2 * nth) {
      for (int64_t t = 0; t < n_tok; ++t) tk->quantize(X + t * cols, qj.dst + t * qj.x_row, cols);
    } else {
      const QuantizeJob* qp = &qj;
      pool->ParallelFor(n_tok, [qp](int64_t b, int64_t e) {
        for (int64_t t = b; t < e; ++t)
          qp->tk->quantize(qp->X + t * qp->cols, qp->dst + t * qp->x_row, qp->cols);
      });
    }
    job.x = scratch->data();
    if (prepared) {
      uint8_t* xg = scratch->data() + need;
      xg += (64 - reinterpret_cast<uintptr_t>(xg) % 64) % 64;
      job.xg = xg;
      struct PrepareJob {
        const MatMulJob* j;
        uint8_t* xg;
        int64_t n_prep;
      } pj{&job, xg, n_prep};
      const PrepareJob* pp = &pj;  // one pointer captured: the std::function does not allocate
      auto prepare = [pp](int64_t g_begin, int64_t g_end) {
        const MatMulJob& j = *pp->j;
        for (int64_t g = g_begin; g < g_end; ++g) {
          const int64_t t = g * internal::kMaxDotCols;
          const int nx = static_cast<int>(std::min<int64_t>(internal::kMaxDotCols, pp->n_prep - t));
          j.tk->prepare_tile_x(j.x + t * j.x_row, j.x_row, nx, pp->xg + g * j.x_group, j.cols);
        }
      };
      if (nth == 1 || n_groups < 2 * nth) {
        prepare(0, n_groups);
      } else {
        pool->ParallelFor(n_groups, prepare);
      }
    }
  }

  // 2. Rows split into one contiguous range per thread.
  if (nth == 1) {
    MatMulRange(job, 0, rows);
    return;
  }
  const MatMulJob* jp = &job;  // captured by pointer: the std::function stays allocation-free
  pool->Run([jp](int ith, int n) {
    const int64_t b = jp->rows * ith / n;
    const int64_t e = jp->rows * (ith + 1) / n;
    if (b < e) MatMulRange(*jp, b, e);
  });
}

void RmsNorm(const float* x, const float* w, float* y, int64_t n, float eps) {
  Active().rms_norm(x, w, y, n, eps);
}

void Rope(float* x, int64_t n_heads, int64_t head_dim, int32_t pos, float base,
          const float* freq_factors, bool neox) {
  // Cheap (one sin/cos pair per rotated pair, shared by all heads): the scalar twin is used.
  ref::Rope(x, n_heads, head_dim, pos, base, freq_factors, neox);
}

void Softmax(float* x, int64_t n) { Active().softmax(x, n); }

void SiluMul(float* gate, const float* up, int64_t n) { Active().silu_mul(gate, up, n); }

void Add(float* y, const float* x, int64_t n) { Active().add(y, x, n); }

void Attention(const float* q, const uint16_t* k, const uint16_t* v, int64_t n_kv,
               int64_t kv_stride, int n_heads, int n_kv_heads, int head_dim, float scale,
               float* out, float* scratch) {
  Active().attention(q, k, v, n_kv, kv_stride, n_heads, n_kv_heads, head_dim, scale, out, scratch);
}

int64_t AttentionTiledScratch(int head_dim) {
  // V accumulators [64, head_dim], scores [64, 64], K tile transposed [head_dim, 64], V tile
  // [64, head_dim], plus alignment slack.
  return 3 * 64 * static_cast<int64_t>(head_dim) + 64 * 64 + 16;
}

bool HasTiledAttention(int head_dim) {
  return Active().attention_tiled != nullptr && head_dim % 16 == 0 && head_dim >= 16 &&
         head_dim <= 128;
}

void AttentionTiled(const float* q, int64_t q_stride, const int32_t* n_vis, int n_q,
                    const uint16_t* k, const uint16_t* v, int64_t kv_stride, int head_dim,
                    float scale, float* out, int64_t out_stride, float* scratch) {
  if (HasTiledAttention(head_dim)) {
    Active().attention_tiled(q, q_stride, n_vis, n_q, k, v, kv_stride, head_dim, scale, out,
                             out_stride, scratch);
  } else {
    ref::AttentionTiled(q, q_stride, n_vis, n_q, k, v, kv_stride, head_dim, scale, out, out_stride,
                        scratch);
  }
}

namespace {
internal::AccumulateKvRowFn AccumulateKvRowOf(const internal::IsaKernels& isa) {
  return isa.accumulate_kv_row != nullptr ? isa.accumulate_kv_row : internal::AccumulateKvRow;
}
}  // namespace

void AttentionKv(const KvAttention& a, const float* q, float* out, float* scratch) {
  const internal::IsaKernels& isa = Active();
  internal::AttentionKvWith(isa, AccumulateKvRowOf(isa), a, q, out, scratch);
}

void QuantizeKvRow(DType t, const float* x, void* dst, int64_t n) {
  internal::QuantizeKvRowWith(Active(), t, x, dst, n);
}

void AttentionKvPartial(const KvAttention& a, const float* q, float* partial, float* scratch) {
  const internal::IsaKernels& isa = Active();
  if (isa.attention_kv_partial != nullptr && isa.attention_kv_partial(a, q, partial, scratch))
    return;
  internal::AttentionKvPartialWith(isa, AccumulateKvRowOf(isa), a, q, partial, scratch);
}

namespace internal {

// The order every path keeps: per head, the maximum of the chunks' maxima (fmax in chunk
// order), then per chunk c e = exp(m_c - m), sum = fma(sum_c, e, sum) and each output element
// o = fma(acc_c, e, o), in chunk order, and last o * (1 / sum). Explicit fmas: the AVX-512
// twin (avx512::MergeAttentionPartials) does the same operations element by element.
void MergeAttentionPartialsRef(const float* partials, int64_t n_chunks, int n_heads, int head_dim,
                               float* out) {
  const int64_t stride = AttentionPartialStride(head_dim);
  const int64_t chunk = stride * n_heads;
  for (int h = 0; h < n_heads; ++h) {
    const float* p = partials + h * stride;
    float m = -INFINITY;
    for (int64_t c = 0; c < n_chunks; ++c) m = std::fmax(m, p[c * chunk + head_dim]);
    float* o = out + static_cast<int64_t>(h) * head_dim;
    std::fill(o, o + head_dim, 0.0f);
    float sum = 0.0f;
    for (int64_t c = 0; c < n_chunks; ++c) {
      const float* pc = p + c * chunk;
      const float e = std::exp(pc[head_dim] - m);
      sum = std::fma(pc[head_dim + 1], e, sum);
      for (int i = 0; i < head_dim; ++i) o[i] = std::fma(pc[i], e, o[i]);
    }
    const float inv = sum == 0.0f ? 0.0f : 1.0f / sum;
    for (int i = 0; i < head_dim; ++i) o[i] *= inv;
  }
}

}  // namespace internal

void MergeAttentionPartials(const float* partials, int64_t n_chunks, int n_heads, int head_dim,
                            float* out) {
  if (const auto merge = Active().merge_partials; merge != nullptr)
    return merge(partials, n_chunks, n_heads, head_dim, out);
  internal::MergeAttentionPartialsRef(partials, n_chunks, n_heads, head_dim, out);
}

const char* ActivePath() { return Active().name; }

std::vector<std::string> SupportedPaths() {
  std::vector<std::string> paths;
#if defined(__x86_64__)
  if (CpuHasAvx512()) paths.emplace_back("avx512");
  if (CpuHasAvx2()) paths.emplace_back("avx2");
#elif defined(__aarch64__)
  paths.emplace_back("neon");
#endif
  paths.emplace_back("scalar");
  return paths;
}

bool SetPathForTesting(const char* path) {
  const std::string p = path != nullptr ? path : "";
  const IsaKernels* k = nullptr;
#if defined(__x86_64__)
  if (p == "avx512" && CpuHasAvx512()) k = &internal::Avx512Kernels();
  if (p == "avx2" && CpuHasAvx2()) k = &internal::Avx2Kernels();
#elif defined(__aarch64__)
  if (p == "neon") k = &internal::NeonKernels();
#endif
  if (p == "scalar") k = &internal::ScalarKernels();
  if (k == nullptr) return false;
  g_active.store(k, std::memory_order_release);
  return true;
}

}  // namespace strata::kernels
