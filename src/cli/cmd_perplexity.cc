// strata perplexity: the perplexity of a text file, measured and printed as llama.cpp's
// llama-perplexity does (runtime/perplexity.h), so the two figures can be compared.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <memory>
#include <span>
#include <sstream>

#include "cli/commands.h"
#include "runtime/engine.h"
#include "runtime/perplexity.h"

namespace strata::cli {
namespace {

struct PerplexityArgs {
  std::string model, file;
  int ctx = 512;     // tokens per chunk (llama-perplexity's -c)
  int batch = 2048;  // tokens per forward step, at most ctx (llama-perplexity's -b)
  int threads = 0;   // 0: all cores
  int chunks = -1;   // chunks scored at most (-1: all)
  std::string cache_type_k = "f16", cache_type_v = "f16";
  bool mmap = false;
};

Result<std::string> ReadText(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Errorf("cannot open the text file '%s'", path.c_str());
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Loads the engine with one slot of a.ctx positions.
Result<std::unique_ptr<Engine>> LoadEngine(const PerplexityArgs& a) {
  STRATA_ASSIGN_OR_RETURN(std::string path, ResolveModelArg(a.model));
  EngineOptions eo;
  eo.model_path = path;
  eo.n_ctx = a.ctx;
  eo.n_batch = std::min(a.batch, a.ctx);
  eo.threads = a.threads;
  eo.mmap = a.mmap;
  return LoadCliEngine(eo, a.cache_type_k, a.cache_type_v);
}

// Scores n_chunk chunks of `tokens`, printing "[i]ppl," after each; returns the sums.
Result<NllStats> ScoreChunks(Engine& e, const std::vector<int32_t>& tokens, int n_ctx,
                             int n_chunk) {
  const Tokenizer& tok = e.tokenizer();
  const int32_t bos = tok.add_bos() ? tok.bos() : -1;
  NllStats stats;
  for (int i = 0; i < n_chunk; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    const std::span<const int32_t> chunk(tokens.data() + static_cast<size_t>(i) * n_ctx,
                                         static_cast<size_t>(n_ctx));
    STRATA_RETURN_IF_ERROR(ScorePerplexityChunk(e, chunk, bos, &stats));
    if (i == 0) {
      const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      std::fprintf(stderr, "perplexity: %.2f seconds per pass - ETA %.2f minutes\n", s,
                   s * n_chunk / 60.0);
    }
    std::printf("[%d]%.4f,", i + 1, stats.Perplexity());
    std::fflush(stdout);
  }
  std::printf("\n");
  return stats;
}

int Perplexity(const PerplexityArgs& a) {
  auto text = ReadText(a.file);
  if (!text.ok()) return Fail(text.status().message());
  auto engine = LoadEngine(a);
  if (!engine.ok()) return Fail(engine.status().message());
  Engine& e = *engine.value();
  // As llama-perplexity: BOS when the model adds one, special-token text not parsed.
  const std::vector<int32_t> tokens = e.Tokenize(text.value(), true, false);
  const size_t need = 2 * static_cast<size_t>(a.ctx);
  if (tokens.size() < need)
    return Fail("perplexity with a context of " + std::to_string(a.ctx) + " needs at least " +
                std::to_string(need) + " tokens, but '" + a.file + "' tokenizes to only " +
                std::to_string(tokens.size()) + " (a longer text, or a smaller --ctx-size)");
  const int n_max = static_cast<int>(tokens.size() / static_cast<size_t>(a.ctx));
  const int n_chunk = a.chunks < 0 ? n_max : std::min(a.chunks, n_max);
  if (n_chunk < 1) return Fail("--chunks 0 scores nothing");
  std::fprintf(stderr,
               "perplexity: %zu tokens; calculating perplexity over %d chunks, n_ctx=%d, "
               "batch_size=%d, threads=%d\n",
               tokens.size(), n_chunk, a.ctx, std::min(a.batch, a.ctx), e.pool().size());
  auto stats = ScoreChunks(e, tokens, a.ctx, n_chunk);
  if (!stats.ok()) return Fail(stats.status().message());
  const double err = stats.value().Uncertainty();
  if (err < 0) return Fail("unexpected non-positive variance of the log-probabilities");
  std::printf("Final estimate: PPL = %.4f +/- %.5f\n", stats.value().Perplexity(), err);
  return 0;
}

}  // namespace

Runner AddPerplexityCommand(CLI::App* sub) {
  auto a = std::make_shared<PerplexityArgs>();
  AddModelOption(sub, &a->model);
  sub->add_option("--file,-f", a->file, "Text file to score")->required()->type_name("FILE");
  AddRangeOption(sub, "--ctx-size,--ctx,-c", a->ctx,
                 "Tokens per chunk (the file needs at least 2x)", 4, 1 << 20);
  AddRangeOption(sub, "--batch-size,-b", a->batch, "Tokens per forward step (at most --ctx-size)",
                 1, 1 << 20);
  AddRangeOption(sub, "--threads,-t", a->threads, "Threads (0: all cores)", 0, 1024);
  AddRangeOption(sub, "--chunks", a->chunks, "Chunks scored at most (-1: all)", -1, 1 << 30);
  AddKvCacheTypeOptions(sub, &a->cache_type_k, &a->cache_type_v);
  AddMmapOption(sub, &a->mmap);
  return [a] { return Perplexity(*a); };
}

}  // namespace strata::cli
