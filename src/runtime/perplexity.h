// Perplexity of a token sequence, measured the way llama.cpp's llama-perplexity measures it:
// the text is cut into chunks of n_ctx tokens, each chunk runs in a fresh context (its first
// token replaced by BOS when the vocabulary adds one) and only the second half of each chunk is
// scored, so every scored token has at least n_ctx/2 tokens of context.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "base/status.h"
#include "runtime/engine.h"

namespace strata {

// Running sums over the scored tokens.
struct NllStats {
  double nll = 0;     // sum of -log p(token)
  double nll2 = 0;    // sum of (log p(token))^2
  int64_t count = 0;  // tokens scored

  // exp(mean NLL); 0 before any token.
  double Perplexity() const;
  // The standard error of the perplexity: ppl * sqrt(var(NLL) / (count - 1)), var(NLL) the
  // population variance nll2/count - mean^2. Negative when that variance is not positive (or
  // fewer than 2 tokens): llama.cpp prints no estimate then.
  double Uncertainty() const;
};

// -log softmax(row)[token], in double. row: [n_vocab] logits.
double TokenNll(const float* row, int64_t n_vocab, int32_t token);

// Adds the NLL of next[i] under logits row i, for every i. logits: [next.size(), n_vocab].
// Error when an id is outside the vocabulary.
Status AccumulateNll(const float* logits, int64_t n_vocab, std::span<const int32_t> next,
                     NllStats* stats);

// The first scored position of a chunk of n_ctx tokens (llama.cpp's `first`): n_ctx / 2. The
// logits at positions first .. n_ctx-2 predict the tokens first+1 .. n_ctx-1.
inline int FirstScored(int n_ctx) { return n_ctx / 2; }

// Scores one chunk (its whole length is the context) in slot 0 of the engine, which is
// cleared first: runs it with chunk[0] replaced by `bos` (when bos >= 0) and adds the NLL of
// its tokens FirstScored(n)+1 .. n-1 to *stats. The engine's n_ctx must hold the chunk.
Status ScorePerplexityChunk(Engine& engine, std::span<const int32_t> chunk, int32_t bos,
                            NllStats* stats);

}  // namespace strata
