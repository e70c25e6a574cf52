// Sampler chain, applied in llama.cpp's order: penalties -> top-k -> top-p -> min-p ->
// temperature -> draw. temperature <= 0 means greedy (argmax of the raw logits).
#pragma once

#include <cstdint>
#include <deque>
#include <random>
#include <vector>

namespace strata {

struct SamplerParams {
  float temperature = 0.8f;
  int32_t top_k = 40;           // <= 0: off
  float top_p = 0.95f;          // >= 1: off
  float min_p = 0.05f;          // <= 0: off
  float repeat_penalty = 1.0f;  // 1: off
  float presence_penalty = 0.0f;
  float frequency_penalty = 0.0f;
  int32_t penalty_last_n = 64;  // tokens looked back on for penalties
  uint64_t seed = 0xFFFFFFFFu;  // fixed seed => same output
};

class Sampler {
 public:
  explicit Sampler(const SamplerParams& params);

  // Picks the next token from logits[n_vocab]. Does not modify logits.
  int32_t Sample(const float* logits, int32_t n_vocab);
  // Records a token (prompt or generated) for the penalties.
  void Accept(int32_t token);
  void Reset();
  const SamplerParams& params() const { return params_; }

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
};

}  // namespace strata
