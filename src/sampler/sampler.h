// Sampler chain, applied in llama.cpp's order: penalties -> top-k -> top-p -> min-p ->
// temperature -> draw. temperature <= 0 means greedy: the argmax (lowest id on ties) of
// the logits after the penalties (the raw logits when penalties are off).
// The seed is always used as given (no "random seed" value); Reset() re-seeds.
#pragma once

#include <cstdint>
#include <deque>
#include <random>
#include <utility>
#include <vector>

#include "base/sampler_params.h"

namespace strata {

// Log-probabilities of one sampled token, from the model's raw distribution: log-softmax of
// the logits before penalties, filters and temperature (what OpenAI and llama-server report).
struct TokenLogprob {
  int32_t id = -1;
  float logprob = 0;
  std::vector<std::pair<int32_t, float>> top;  // the k most likely (id, logprob), best first
};
// `id`'s log-probability in logits[n_vocab] and the k most likely tokens (ties: lower id).
TokenLogprob ComputeLogprobs(const float* logits, int32_t n_vocab, int32_t id, int k);

class Sampler {
 public:
  explicit Sampler(const SamplerParams& params);

  // Picks the next token from logits[n_vocab]. Does not modify logits.
  int32_t Sample(const float* logits, int32_t n_vocab);
  // The distribution Sample() draws from, without drawing: (id, probability) of every
  // candidate left by the penalties, filters and temperature, probabilities summing to 1
  // (greedy or degenerate logits: the one pick with 1). Speculative verification uses it.
  void Distribution(const float* logits, int32_t n_vocab,
                    std::vector<std::pair<int32_t, double>>* out);
  // A uniform draw in [0, 1) from the sampler's random stream (the same two outputs as one
  // Sample() draw); 0 without drawing when greedy.
  double Draw01();
  // Records a token (prompt or generated) for the penalties.
  void Accept(int32_t token);
  // Forgets the accepted tokens and re-seeds the RNG: the sampler behaves as new.
  void Reset();
  // Advances the random stream exactly as n Sample() calls would: each one that draws
  // (temperature > 0 and a finite best logit, i.e. any real model's logits) takes two 32-bit
  // outputs of the generator; greedy sampling takes none. Used to continue a seeded
  // generation from tokens produced earlier (Accept those tokens separately).
  void SkipSamples(int64_t n);
  const SamplerParams& params() const { return params_; }

  // Diagnostics/tests: the candidates that survived the last Sample()'s filters as
  // (id, logit after penalties and temperature), sorted by id; after a greedy pick, every
  // token with its penalised logit. Allocates; not for the hot path.
  std::vector<std::pair<int32_t, float>> LastCandidates() const;

 private:
  struct Candidate {
    int32_t id;
    float logit;
    float p;
  };
  SamplerParams params_;
  std::mt19937 rng_;
  std::deque<int32_t> history_;
  std::vector<Candidate> cand_;  // reused between calls
  size_t n_cand_ = 0;            // candidates left after the last Sample()'s filters
  // counts_[t]: occurrences of token t in history_ (sized to the largest id seen).
  std::vector<int32_t> counts_;

  void Seed();
  void ApplyPenalties(int32_t n_vocab);
  int32_t Greedy(int32_t n_vocab);
  int32_t Weigh(const float* logits, int32_t n_vocab, size_t* size, double* sum);
  void TopK(size_t* size, bool* sorted);
  void TopP(size_t* size, bool* sorted, size_t mass_size);
  void MinP(size_t* size, bool* sorted);
  double Uniform01();
};

}  // namespace strata
