// strata bench: engine speed with llama-bench's definitions, and a memory read-bandwidth probe.
//
//   pp<P>: P random prompt tokens (BOS first when the model adds one) evaluated as one batch
//          into an empty KV cache; only the last token produces logits. Time = that forward.
//   tg<N>: N single-token forward steps starting from an empty cache (first input BOS or a
//          random token); each step computes the logits and feeds back their argmax.
//   --parallel B: tg runs B sequences together, one token of each per step (the node's
//          continuous batching); tokens/s is the aggregate over the B sequences.
//   -d D (--n-depth, llama-bench's depth): before each test the KV cache already holds D
//          tokens of context (BOS first when the model adds one, then random tokens), so ppP
//          evaluates P more tokens as one batch at positions D..D+P-1 and tgN runs N steps at
//          positions D, D+1, ... Tests are then named "pp512 @ d4096". The D tokens are
//          evaluated once per process, untimed, in batches of up to 512; before every
//          repetition (warm-up included) each sequence is truncated back to its first D
//          positions (KvCache::set_length: the rows beyond are simply overwritten), and with
//          --parallel the other sequences get a copy of sequence 0's D positions. The context
//          is sized D + max(P, N).
//   --depth-eval E (0 < E < D; NOT llama-bench semantics, off by default): evaluate only the
//          first E depth tokens and fill positions E..D-1 by repeating those K/V rows. The
//          timed tests then attend over D positions of realistic values (the attention work
//          does not depend on them) without the untimed O(D^2) fill; used for 16k depths.
//   Each test runs once as a warm-up (tg: one step), then --reps times; the cache is cleared
//   (or truncated to D) before every repetition. Reported: mean ± sample stddev of tokens/s
//   over the repetitions (as llama-bench), plus the median and the raw samples in --json.
//   Effective generation bandwidth = bytes of weights one token reads (every layer's
//   weights, final norm and output head, one embedding row) × tokens/s.
//
//   --memory-bandwidth: streaming reads over a buffer much larger than the caches, split
//   across --threads threads (the engine's thread pool), best of several passes, GB/s.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "base/thread_pool.h"
#include "base/timer.h"
#include "cli/commands.h"
#include "model/forward.h"
#include "runtime/engine.h"

namespace strata::cli {
namespace {

struct BenchArgs {
  std::string model;
  int n_prompt = 512;
  int n_gen = 128;
  int threads = 0;
  int reps = 5;
  int parallel = 1;    // sequences decoding together in tg (aggregate tokens/s)
  int n_depth = 0;     // tokens already in the KV cache before each test (llama-bench -d)
  int depth_eval = 0;  // >0: evaluate only this many depth tokens, repeat their K/V rows
  std::string cache_type_k = "f16", cache_type_v = "f16";  // KV cache types
  bool mmap = false;
  bool json = false;
  bool memory_bandwidth = false;
  int membw_mib = 1024;
  int membw_passes = 5;
};

struct Stats {
  std::vector<double> samples;  // tokens/s (or GB/s) per repetition
  double mean = 0, stddev = 0, median = 0, best = 0;
};

Stats Summarize(std::vector<double> s) {
  Stats st;
  st.samples = s;
  if (s.empty()) return st;
  double sum = 0;
  for (double v : s) sum += v;
  st.mean = sum / static_cast<double>(s.size());
  if (s.size() > 1) {
    double ss = 0;
    for (double v : s) ss += (v - st.mean) * (v - st.mean);
    st.stddev = std::sqrt(ss / static_cast<double>(s.size() - 1));
  }
  std::sort(s.begin(), s.end());
  const size_t m = s.size() / 2;
  st.median = s.size() % 2 ? s[m] : 0.5 * (s[m - 1] + s[m]);
  st.best = s.back();
  return st;
}

nlohmann::json StatsJson(const Stats& st) {
  return {{"mean", st.mean}, {"stddev", st.stddev}, {"median", st.median}, {"samples", st.samples}};
}

uint64_t MatrixBytes(const Matrix& m) {
  return m.present() ? static_cast<uint64_t>(m.rows) * m.row_bytes : 0;
}

uint64_t VectorBytes(const std::vector<float>& v) { return v.size() * sizeof(float); }

// Bytes of weights one generated token reads: all layers, the final norm and output head, and
// one row of the token embedding.
uint64_t WeightBytesPerToken(const Model& m) {
  uint64_t b = 0;
  for (int il = m.first_layer(); il < m.last_layer(); ++il) {
    const LayerWeights& L = m.layer(il);
    for (const Matrix* w : {&L.wq, &L.wk, &L.wv, &L.wo, &L.w_gate, &L.w_up, &L.w_down})
      b += MatrixBytes(*w);
    for (const auto* v : {&L.attn_norm, &L.ffn_norm, &L.bq, &L.bk, &L.bv}) b += VectorBytes(*v);
  }
  if (m.has_head()) b += MatrixBytes(m.output()) + VectorBytes(m.output_norm());
  if (m.has_embedding()) b += m.tok_embd().row_bytes;
  return b;
}

class EngineBench {
 public:
  EngineBench(Engine* e, uint32_t seed)
      : e_(e), fwd_(e->model(), &e->cache(), &e->pool()), rng_(seed) {}

  // Untimed: evaluates `depth` tokens (BOS first when the model adds one, then random ones)
  // into sequence 0 in batches of up to `chunk`, then copies them to sequences 1..n_seq-1.
  // Every later repetition starts from these positions (see ResetToDepth).
  // With 0 < n_eval < depth only the first n_eval tokens are evaluated and their K/V rows are
  // repeated up to `depth` (a timing shortcut, see --depth-eval).
  Status FillDepth(int depth, int chunk, int n_eval = 0) {
    depth_ = depth;
    const int n_real = n_eval > 0 && n_eval < depth ? n_eval : depth;  // tokens evaluated
    e_->cache().Clear(0);
    const int32_t n_vocab = static_cast<int32_t>(e_->model().config().n_vocab);
    std::uniform_int_distribution<int32_t> tok(0, n_vocab - 1);
    for (int p = 0; p < n_real; p += chunk) {
      batch_.Clear();
      const int end = std::min(n_real, p + chunk);
      for (int i = p; i < end; ++i) {
        const bool bos = i == 0 && e_->tokenizer().add_bos() && e_->tokenizer().bos() >= 0;
        batch_.Add(bos ? e_->tokenizer().bos() : tok(rng_), i, 0, false);
      }
      STRATA_RETURN_IF_ERROR(fwd_.Run(batch_, nullptr, &logits_));
    }
    KvCache& kv = e_->cache();
    const size_t krow = kv.k_row_bytes(), vrow = kv.v_row_bytes();  // bytes per position
    for (int p = n_real; p < depth_; p += n_real) {
      const size_t n = static_cast<size_t>(std::min(n_real, depth_ - p));
      for (int l = 0; l < kv.n_layers(); ++l) {
        std::memcpy(kv.KRows(l, 0) + p * krow, kv.KRows(l, 0), n * krow);
        std::memcpy(kv.VRows(l, 0) + p * vrow, kv.VRows(l, 0), n * vrow);
      }
    }
    kv.set_length(0, depth_);
    for (int s = 1; s < kv.n_seq(); ++s) kv.CopyPrefix(0, s, depth_);
    return Status::Ok();
  }

  // Truncates sequence `seq` back to the depth context: positions >= depth_ are dropped (their
  // rows are overwritten by the next forward). With depth 0 this clears the sequence.
  void ResetToDepth(int seq) { e_->cache().set_length(seq, depth_); }

  // One pp repetition: seconds for the forward over n random tokens after the depth context.
  Result<double> Prompt(int n) {
    const int32_t n_vocab = static_cast<int32_t>(e_->model().config().n_vocab);
    std::uniform_int_distribution<int32_t> tok(0, n_vocab - 1);
    ResetToDepth(0);
    batch_.Clear();
    for (int i = 0; i < n; ++i) {
      const bool bos =
          depth_ == 0 && i == 0 && e_->tokenizer().add_bos() && e_->tokenizer().bos() >= 0;
      batch_.Add(bos ? e_->tokenizer().bos() : tok(rng_), depth_ + i, 0, i == n - 1);
    }
    Timer t;
    STRATA_RETURN_IF_ERROR(fwd_.Run(batch_, nullptr, &logits_));
    return t.ElapsedMs() / 1e3;
  }

  // One tg repetition: seconds for n steps after the depth context (empty caches when it is
  // 0); each step evaluates one token of each of `parallel` sequences (forward + argmax per
  // sequence).
  Result<double> Generate(int n, int parallel) {
    const int32_t n_vocab = static_cast<int32_t>(e_->model().config().n_vocab);
    const Tokenizer& tk = e_->tokenizer();
    std::vector<int32_t> token(static_cast<size_t>(parallel));
    for (int s = 0; s < parallel; ++s) {
      token[s] = depth_ == 0 && tk.add_bos() && tk.bos() >= 0 && s == 0
                     ? tk.bos()
                     : std::uniform_int_distribution<int32_t>(0, n_vocab - 1)(rng_);
      ResetToDepth(s);
    }
    Timer t;
    for (int i = 0; i < n; ++i) {
      batch_.Clear();
      for (int s = 0; s < parallel; ++s) batch_.Add(token[s], depth_ + i, s, true);
      STRATA_RETURN_IF_ERROR(fwd_.Run(batch_, nullptr, &logits_));
      for (int s = 0; s < parallel; ++s) {
        const auto row = logits_.begin() + static_cast<ptrdiff_t>(s) * n_vocab;
        token[s] = static_cast<int32_t>(std::max_element(row, row + n_vocab) - row);
      }
    }
    return t.ElapsedMs() / 1e3;
  }

 private:
  Engine* e_;
  Forward fwd_;
  std::mt19937 rng_;
  Batch batch_;
  std::vector<float> logits_;
  int depth_ = 0;
};

// Resident set size of this process in bytes (VmRSS), or 0 when /proc is unavailable.
uint64_t ResidentBytes() {
  FILE* f = std::fopen("/proc/self/status", "r");
  if (!f) return 0;
  char line[256];
  unsigned long long kb = 0;
  while (std::fgets(line, sizeof line, f))
    if (std::sscanf(line, "VmRSS: %llu kB", &kb) == 1) break;
  std::fclose(f);
  return static_cast<uint64_t>(kb) * 1024;
}

// Streaming read bandwidth: each pass sums every 64-bit word of `mib` MiB, split in contiguous
// slices over the pool's threads. Returns GB/s (1e9 bytes) of each pass.
std::vector<double> MeasureReadBandwidth(ThreadPool* pool, int mib, int passes) {
  using V = uint64_t __attribute__((vector_size(32)));  // 4 words; the compiler picks the ISA
  const size_t bytes = static_cast<size_t>(mib) << 20;
  const size_t n_vec = bytes / sizeof(V);
  std::unique_ptr<V[]> buf(new V[n_vec]);
  // Fault every page in (and make the contents non-trivial) before timing.
  pool->ParallelFor(static_cast<int64_t>(n_vec), [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) buf[static_cast<size_t>(i)] = V{} + static_cast<uint64_t>(i);
  });
  std::vector<uint64_t> sink(static_cast<size_t>(pool->size()) * 8, 0);
  std::vector<double> gbs;
  for (int p = 0; p < passes; ++p) {
    Timer t;
    pool->Run([&](int ith, int nth) {
      const size_t b = n_vec * static_cast<size_t>(ith) / static_cast<size_t>(nth);
      const size_t e = n_vec * static_cast<size_t>(ith + 1) / static_cast<size_t>(nth);
      V a0{}, a1{}, a2{}, a3{};  // independent accumulators keep several loads in flight
      size_t i = b;
      for (; i + 4 <= e; i += 4) {
        a0 += buf[i];
        a1 += buf[i + 1];
        a2 += buf[i + 2];
        a3 += buf[i + 3];
      }
      for (; i < e; ++i) a0 += buf[i];
      const V s = a0 + a1 + a2 + a3;
      sink[static_cast<size_t>(ith) * 8] += s[0] + s[1] + s[2] + s[3];  // keep the reads live
    });
    const double sec = t.ElapsedMs() / 1e3;
    gbs.push_back(static_cast<double>(bytes) / sec / 1e9);
  }
  volatile uint64_t keep = 0;
  for (uint64_t v : sink) keep = keep + v;
  (void)keep;
  return gbs;
}

int Bench(const BenchArgs& a) {
  if (a.model.empty() && !a.memory_bandwidth)
    return Fail("bench: give --model (engine speed) and/or --memory-bandwidth");
  if (a.n_prompt < 0 || a.n_gen < 0) return Fail("bench: -p and -n must be >= 0");
  if (a.n_depth < 0 || a.depth_eval < 0) return Fail("bench: -d and --depth-eval must be >= 0");
  if (a.reps < 1) return Fail("bench: --reps must be >= 1");
  if (a.parallel < 1 || a.parallel > 256) return Fail("bench: --parallel must be in 1..256");
  if (a.membw_mib < 1 || a.membw_passes < 1)
    return Fail("bench: --membw-mib and --membw-passes must be >= 1");

  nlohmann::json out;
  if (!a.model.empty()) {
    EngineOptions eo;
    eo.model_path = a.model;
    constexpr int kDepthChunk = 512;  // tokens per forward while filling the depth context
    if (a.n_depth > (1 << 30) - std::max(a.n_prompt, a.n_gen))
      return Fail("bench: -d plus max(-p, -n) is too large");
    eo.n_ctx = std::max(1, a.n_depth + std::max(a.n_prompt, a.n_gen));
    eo.threads = a.threads;
    eo.n_batch = std::max({1, a.n_prompt, a.parallel, a.n_depth > 0 ? kDepthChunk : 0});
    eo.n_seq = a.parallel;
    eo.mmap = a.mmap;
    auto loaded = LoadCliEngine(eo, a.cache_type_k, a.cache_type_v);
    if (!loaded.ok()) return Fail(loaded.status().message());
    Engine& e = *loaded.value();
    EngineBench eb(&e, 1234);
    const uint64_t wbytes = WeightBytesPerToken(e.model());
    const ModelConfig& c = e.model().config();

    out["model"] = a.model;
    out["arch"] = c.arch_name;
    out["n_vocab"] = c.n_vocab;
    out["weight_bytes"] = e.model().bound_weight_bytes();
    out["threads"] = e.pool().size();
    out["reps"] = a.reps;
    out["n_depth"] = a.n_depth;
    out["n_ctx"] = e.cache().n_ctx();
    // K and V rows of every layer: bytes one cached position takes.
    const uint64_t kv_per_token = static_cast<uint64_t>(e.cache().n_layers()) *
                                  (e.cache().k_row_bytes() + e.cache().v_row_bytes());
    out["kv_bytes_per_token"] = kv_per_token;
    out["cache_type_k"] = DTypeName(e.cache().k_type());
    out["cache_type_v"] = DTypeName(e.cache().v_type());
    out["kv_cache_reserved_bytes"] = e.cache().bytes();
    if (!a.json)
      std::printf("model %s (%s, %d layers), %d threads, %d reps%s\n", a.model.c_str(),
                  c.arch_name.c_str(), c.n_layers, e.pool().size(), a.reps,
                  a.n_depth > 0 ? (", depth " + std::to_string(a.n_depth)).c_str() : "");
    const std::string at_depth = a.n_depth > 0 ? " @ d" + std::to_string(a.n_depth) : "";
    if (a.n_depth > 0 && (a.n_prompt > 0 || a.n_gen > 0)) {
      Timer fill;
      if (auto s = eb.FillDepth(a.n_depth, kDepthChunk, a.depth_eval); !s.ok())
        return Fail(s.message());
      out["depth_fill_s"] = fill.ElapsedMs() / 1e3;
      if (a.depth_eval > 0 && a.depth_eval < a.n_depth) out["depth_eval"] = a.depth_eval;
      if (!a.json)
        std::printf("depth context: %d tokens (%d evaluated) in %.1f s (untimed)\n", a.n_depth,
                    out.contains("depth_eval") ? a.depth_eval : a.n_depth, fill.ElapsedMs() / 1e3);
    }

    if (a.n_prompt > 0) {
      if (auto w = eb.Prompt(a.n_prompt); !w.ok()) return Fail(w.status().message());  // warm-up
      std::vector<double> ts;
      for (int r = 0; r < a.reps; ++r) {
        auto s = eb.Prompt(a.n_prompt);
        if (!s.ok()) return Fail(s.status().message());
        ts.push_back(a.n_prompt / s.value());
      }
      const Stats st = Summarize(ts);
      nlohmann::json j = StatsJson(st);
      j["test"] = "pp" + std::to_string(a.n_prompt) + at_depth;
      j["n_tokens"] = a.n_prompt;
      j["n_depth"] = a.n_depth;
      out["pp"] = j;
    }
    if (a.n_gen > 0) {
      if (auto w = eb.Generate(1, a.parallel); !w.ok())  // warm-up
        return Fail(w.status().message());
      std::vector<double> ts;
      for (int r = 0; r < a.reps; ++r) {
        auto s = eb.Generate(a.n_gen, a.parallel);
        if (!s.ok()) return Fail(s.status().message());
        ts.push_back(static_cast<double>(a.n_gen) * a.parallel / s.value());
      }
      const Stats st = Summarize(ts);
      nlohmann::json j = StatsJson(st);
      j["test"] = "tg" + std::to_string(a.n_gen) +
                  (a.parallel > 1 ? "x" + std::to_string(a.parallel) : "") + at_depth;
      j["n_tokens"] = a.n_gen;
      j["n_depth"] = a.n_depth;
      j["parallel"] = a.parallel;
      j["weight_bytes_per_token"] = wbytes;
      // Weights are read once per step, whatever the number of sequences in it.
      j["effective_gbs"] = st.mean / a.parallel * static_cast<double>(wbytes) / 1e9;
      j["effective_gbs_median"] = st.median / a.parallel * static_cast<double>(wbytes) / 1e9;
      out["tg"] = j;
    }
    // Positions in use at the end: the depth context plus the longer test.
    out["kv_cache_used_bytes"] = kv_per_token *
                                 static_cast<uint64_t>(a.n_depth + std::max(a.n_prompt, a.n_gen)) *
                                 static_cast<uint64_t>(a.parallel);
    out["rss_bytes"] = ResidentBytes();
    if (!a.json) {
      const int w = a.n_depth > 0 ? 20 : 8;
      std::printf("| %-*s | %10s | %8s | %10s | %10s |\n", w, "test", "t/s mean", "stddev",
                  "t/s median", "eff. GB/s");
      std::printf("|%s|------------|----------|------------|------------|\n",
                  std::string(static_cast<size_t>(w) + 2, '-').c_str());
      for (const char* k : {"pp", "tg"}) {
        if (!out.contains(k)) continue;
        const auto& j = out[k];
        char bw[32] = "";
        if (j.contains("effective_gbs"))
          std::snprintf(bw, sizeof bw, "%.2f", j["effective_gbs"].get<double>());
        std::printf("| %-*s | %10.2f | %8.2f | %10.2f | %10s |\n", w,
                    j["test"].get<std::string>().c_str(), j["mean"].get<double>(),
                    j["stddev"].get<double>(), j["median"].get<double>(), bw);
      }
      std::printf("weights read per generated token: %.1f MB\n", static_cast<double>(wbytes) / 1e6);
      if (a.n_depth > 0)
        std::printf(
            "KV cache: %.1f MiB in use (%.1f KiB per position, K %s, V %s), process "
            "RSS %.1f MiB\n",
            out["kv_cache_used_bytes"].get<double>() / (1 << 20),
            static_cast<double>(kv_per_token) / 1024, DTypeName(e.cache().k_type()),
            DTypeName(e.cache().v_type()), out["rss_bytes"].get<double>() / (1 << 20));
    }
  }

  if (a.memory_bandwidth) {
    ThreadPool pool(a.threads);
    const Stats st = Summarize(MeasureReadBandwidth(&pool, a.membw_mib, a.membw_passes));
    nlohmann::json j = StatsJson(st);
    j["best_gbs"] = st.best;
    j["buffer_mib"] = a.membw_mib;
    j["passes"] = a.membw_passes;
    j["threads"] = pool.size();
    out["memory_bandwidth"] = j;
    if (!a.json)
      std::printf(
          "memory read bandwidth: %.2f GB/s best (median %.2f) of %d passes over %d MiB, "
          "%d threads\n",
          st.best, st.median, a.membw_passes, a.membw_mib, pool.size());
  }
  if (a.json) std::printf("%s\n", out.dump().c_str());
  return 0;
}

}  // namespace

Runner AddBenchCommand(CLI::App* cmd) {
  auto args = std::make_shared<BenchArgs>();
  cmd->add_option("--model,-m", args->model, "GGUF model file");
  cmd->add_option("-p,--n-prompt", args->n_prompt, "prompt tokens in one batch (0: skip pp)")
      ->capture_default_str();
  cmd->add_option("-n,--n-gen", args->n_gen, "tokens generated one at a time (0: skip tg)")
      ->capture_default_str();
  cmd->add_option("--threads,-t", args->threads, "threads (0: all cores)")->capture_default_str();
  AddKvCacheTypeOptions(cmd, &args->cache_type_k, &args->cache_type_v);
  AddMmapOption(cmd, &args->mmap);
  cmd->add_option("--reps,-r", args->reps, "timed repetitions of each test")->capture_default_str();
  cmd->add_option("-d,--n-depth", args->n_depth,
                  "tokens already in the KV cache before each test (llama-bench's depth; filled "
                  "once, untimed)")
      ->capture_default_str();
  cmd->add_option("--depth-eval", args->depth_eval,
                  "evaluate only this many depth tokens and repeat their K/V rows up to -d "
                  "(timing shortcut, not llama-bench semantics; 0: evaluate all)")
      ->capture_default_str();
  cmd->add_option("--parallel", args->parallel,
                  "tg: sequences decoding together, one token each per step (aggregate t/s)")
      ->capture_default_str();
  cmd->add_flag("--json", args->json, "print one JSON object");
  cmd->add_flag("--memory-bandwidth", args->memory_bandwidth,
                "measure streaming memory read bandwidth (GB/s)");
  cmd->add_option("--membw-mib", args->membw_mib, "buffer size of the bandwidth probe, MiB")
      ->capture_default_str();
  cmd->add_option("--membw-passes", args->membw_passes, "passes of the bandwidth probe (best kept)")
      ->capture_default_str();
  return [args] { return Bench(*args); };
}

}  // namespace strata::cli
