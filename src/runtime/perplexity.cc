#include "runtime/perplexity.h"

#include <algorithm>
#include <cmath>

namespace strata {

double NllStats::Perplexity() const {
  return count > 0 ? std::exp(nll / static_cast<double>(count)) : 0.0;
}

double NllStats::Uncertainty() const {
  if (count < 2) return -1.0;
  const double n = static_cast<double>(count);
  const double mean = nll / n;
  const double var = nll2 / n - mean * mean;
  if (!(var > 0)) return -1.0;
  return std::sqrt(var / (n - 1)) * std::exp(mean);
}

double TokenNll(const float* row, int64_t n_vocab, int32_t token) {
  const float max = *std::max_element(row, row + n_vocab);
  double sum = 0;
  for (int64_t i = 0; i < n_vocab; ++i) sum += std::exp(static_cast<double>(row[i] - max));
  return std::log(sum) - static_cast<double>(row[token] - max);
}

Status AccumulateNll(const float* logits, int64_t n_vocab, std::span<const int32_t> next,
                     NllStats* stats) {
  for (size_t i = 0; i < next.size(); ++i) {
    if (next[i] < 0 || next[i] >= n_vocab)
      return Errorf("token id %d is outside the vocabulary of %lld", next[i],
                    static_cast<long long>(n_vocab));
    const double v = TokenNll(logits + static_cast<int64_t>(i) * n_vocab, n_vocab, next[i]);
    stats->nll += v;
    stats->nll2 += v * v;
    ++stats->count;
  }
  return Status::Ok();
}

Status ScorePerplexityChunk(Engine& engine, std::span<const int32_t> chunk, int32_t bos,
                            NllStats* stats) {
  const int n = static_cast<int>(chunk.size());
  const int first = FirstScored(n);
  if (n < 2 || first >= n - 1) return Errorf("a chunk of %d tokens has nothing to score", n);
  std::vector<int32_t> tokens(chunk.begin(), chunk.end());  // [n]
  if (bos >= 0) tokens[0] = bos;
  engine.cache().Clear(0);
  std::vector<float> logits;  // [n - first, n_vocab]: positions first .. n-1
  STRATA_RETURN_IF_ERROR(engine.EvalOutputs(tokens, 0, first, &logits));
  // Rows first .. n-2 predict chunk[first+1 .. n-1]; the last row predicts past the chunk.
  return AccumulateNll(logits.data(), engine.model().config().n_vocab,
                       chunk.subspan(static_cast<size_t>(first) + 1), stats);
}

}  // namespace strata
