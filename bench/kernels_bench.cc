// Micro-benchmarks of the compute kernels (Google Benchmark). Not built by default; e.g.
//   g++ -O2 -std=c++20 -Isrc bench/kernels_bench.cc <build>/src/kernels/libstrata_kernels.a \
//     <build>/src/tensor/libstrata_tensor.a <build>/src/base/libstrata_base.a \
//     -lbenchmark -lbenchmark_main -lpthread -o kernels_bench
// MatMul reports bytes_per_second = weight bytes streamed per call. Its weights sit in
// transparent huge pages, as the engine's do (docs/memory.md): in 4 KiB pages the hardware
// prefetchers stop at every page, and a shape that comes from DRAM read slower than in a decode
// step (for Q6_K a software prefetch gained ~40% on 4 KiB pages and nothing in `strata bench`).
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include "base/mmap.h"
#include "kernels/kernels.h"
#include "tensor/quant.h"

namespace strata::kernels {
namespace {

std::vector<float> Random(int64_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> d(-1.0f, 1.0f);
  std::vector<float> v(static_cast<size_t>(n));
  for (float& f : v) f = d(rng);
  return v;
}

// args: rows, cols, n_tok, threads, weight type id, cold (1: weights from DRAM)
void BM_MatMul(benchmark::State& state) {
  const int64_t rows = state.range(0), cols = state.range(1), n_tok = state.range(2);
  const int threads = static_cast<int>(state.range(3));
  const DType t = static_cast<DType>(state.range(4));
  const size_t w_row = RowBytesUnchecked(t, cols);
  // cold: as many copies of the matrix as fill 512 MiB, used in turn, so that each call reads
  // its weights from DRAM as a decode step does (the last-level cache holds tens of MiB);
  // otherwise one copy, read from the caches once it fits (compute speed).
  const size_t w_bytes = w_row * rows;
  const size_t copies =
      state.range(5) != 0 ? std::max<size_t>(1, (size_t{512} << 20) / w_bytes) : 1;
  Result<std::shared_ptr<uint8_t>> region = AllocateHugePages(w_bytes * copies);
  if (!region.ok()) {
    state.SkipWithError(region.status().message().c_str());
    return;
  }
  uint8_t* const w = region->get();
  const std::vector<float> wf = Random(cols, 1);
  for (int64_t r = 0; r < rows; ++r) QuantizeRow(t, wf.data(), w + r * w_row, cols);
  for (size_t c = 1; c < copies; ++c) std::copy_n(w, w_bytes, w + c * w_bytes);
  size_t turn = 0;
  const std::vector<float> x = Random(cols * n_tok, 2);
  std::vector<float> y(rows * n_tok);
  std::vector<uint8_t> scratch;
  ThreadPool pool(threads);
  for (auto _ : state) {
    MatMul(w + (turn++ % copies) * w_bytes, t, rows, cols, x.data(), n_tok, y.data(), &pool,
           &scratch);
    benchmark::DoNotOptimize(y.data());
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * static_cast<int64_t>(w_bytes));
  state.counters["GFLOPS"] = benchmark::Counter(2.0 * rows * cols * n_tok * state.iterations(),
                                                benchmark::Counter::kIsRate);
  state.SetLabel(std::string(DTypeName(t)) + " " + ActivePath());
}

constexpr int kQ8 = static_cast<int>(DType::Q8_0);
constexpr int kF16 = static_cast<int>(DType::F16);
constexpr int kQ4K = static_cast<int>(DType::Q4_K);
constexpr int kQ6K = static_cast<int>(DType::Q6_K);
BENCHMARK(BM_MatMul)
    ->Args({256, 2048, 1, 1, kQ8, 0})
    ->Args({2048, 256, 1, 1, kQ8, 0})  // L2-resident: compute speed
    ->Args({1536, 8960, 1, 1, kQ8, 1})
    ->Args({1536, 8960, 1, 2, kQ8, 1})
    ->Args({8960, 1536, 1, 1, kQ8, 1})
    ->Args({8960, 1536, 1, 2, kQ8, 1})
    ->Args({1536, 8960, 32, 2, kQ8, 1})
    ->Args({1536, 1536, 1, 1, kF16, 1})
    ->Args({8960, 1536, 1, 2, kQ4K, 1})   // r1-qwen-1.5b ffn_up / ffn_gate, decode
    ->Args({1536, 8960, 1, 2, kQ6K, 1})   // its ffn_down where Q4_K_M keeps Q6_K
    ->Args({18944, 3584, 1, 1, kQ4K, 1})  // r1-qwen-7b ffn_up / ffn_gate, decode
    ->Args({18944, 3584, 1, 2, kQ4K, 1})
    ->Args({3584, 18944, 1, 1, kQ6K, 1})  // its ffn_down where Q4_K_M keeps Q6_K
    ->Args({3584, 18944, 1, 2, kQ6K, 1})
    ->Args({3584, 18944, 1, 1, kQ4K, 1})
    ->Args({256, 3584, 1, 1, kQ6K, 0})  // L2-resident: compute speed
    ->Args({256, 3584, 1, 1, kQ4K, 0})
    ->UseRealTime();

void BM_Attention(benchmark::State& state) {
  const int64_t n_kv = state.range(0);
  const int n_heads = 12, n_kv_heads = 2, hd = 128;
  const int64_t stride = n_kv_heads * hd;
  const std::vector<float> q = Random(n_heads * hd, 3);
  std::vector<uint16_t> k(n_kv * stride, 0x3000), v(n_kv * stride, 0x3400);
  std::vector<float> out(n_heads * hd), scratch(n_kv);
  for (auto _ : state) {
    Attention(q.data(), k.data(), v.data(), n_kv, stride, n_heads, n_kv_heads, hd, 0.088f,
              out.data(), scratch.data());
    benchmark::DoNotOptimize(out.data());
  }
  state.SetBytesProcessed(state.iterations() * n_kv * stride * 4);  // K + V bytes
}
BENCHMARK(BM_Attention)->Arg(512)->Arg(4096)->Arg(16384);

// The same token through split-KV attention on one thread (the model's decode path from
// kSplitKvMinKv positions), over the KV caches of n_layers layers in turn: every chunk of both
// KV heads, then the merge, per layer. One layer stays in the caches; 28 (r1-qwen-1.5b's
// shape) are read from memory, as in a real decode step.
void AttentionSplitOver(benchmark::State& state, int n_layers) {
  const int64_t n_kv = state.range(0);
  const DType type = state.range(1) ? DType::Q8_0 : DType::F16;  // K and V
  const int n_heads = 12, n_kv_heads = 2, hd = 128, group = n_heads / n_kv_heads;
  const int64_t n_chunks = SplitKvChunks(n_kv), ps = AttentionPartialStride(hd);
  // One position's row: n_kv_heads heads of hd elements in `type`.
  const size_t head_bytes = type == DType::F16 ? hd * 2 : hd / 32 * 34;
  const size_t row_bytes = n_kv_heads * head_bytes;
  const std::vector<float> q = Random(n_heads * hd, 3), x = Random(hd, 5);
  std::vector<std::vector<uint8_t>> k(n_layers), v(n_layers);
  for (int l = 0; l < n_layers; ++l) {
    k[l].resize(n_kv * row_bytes);
    v[l].resize(n_kv * row_bytes);
    for (int64_t j = 0; j < n_kv * n_kv_heads; ++j) {
      QuantizeKvRow(type, x.data(), k[l].data() + j * head_bytes, hd);
      QuantizeKvRow(type, x.data(), v[l].data() + j * head_bytes, hd);
    }
  }
  std::vector<float> out(n_heads * hd), scratch(group * kSplitKvChunk);
  std::vector<float> partials(n_chunks * n_heads * ps);
  for (auto _ : state) {
    for (int l = 0; l < n_layers; ++l) {
      for (int64_t c = 0; c < n_chunks; ++c) {
        const int64_t j0 = c * kSplitKvChunk;
        for (int kvh = 0; kvh < n_kv_heads; ++kvh) {
          KvAttention a;
          a.k = k[l].data() + j0 * row_bytes + kvh * head_bytes;
          a.v = v[l].data() + j0 * row_bytes + kvh * head_bytes;
          a.k_type = a.v_type = type;
          a.k_row_bytes = a.v_row_bytes = row_bytes;
          a.n_kv = std::min(kSplitKvChunk, n_kv - j0);
          a.n_heads = group;
          a.head_dim = hd;
          a.scale = 0.088f;
          AttentionKvPartial(a, q.data() + kvh * group * hd,
                             partials.data() + (c * n_heads + kvh * group) * ps, scratch.data());
        }
      }
      MergeAttentionPartials(partials.data(), n_chunks, n_heads, hd, out.data());
    }
    benchmark::DoNotOptimize(out.data());
  }
  state.SetBytesProcessed(state.iterations() * n_layers * n_kv * row_bytes * 2);  // K + V bytes
}
// Args: positions, K/V type (0: F16, 1: Q8_0).
void BM_AttentionSplit(benchmark::State& state) { AttentionSplitOver(state, 1); }
BENCHMARK(BM_AttentionSplit)->ArgsProduct({{512, 4096, 16384}, {0, 1}});
void BM_AttentionSplitLayers(benchmark::State& state) { AttentionSplitOver(state, 28); }
BENCHMARK(BM_AttentionSplitLayers)->ArgsProduct({{4096, 16384}, {0, 1}});

}  // namespace
}  // namespace strata::kernels
