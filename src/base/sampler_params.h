// Sampling parameters of a sequence as the sampler uses them and the stage protocol carries
// them: sampler/sampler.h's Sampler takes this struct, net/protocol.h's WireSamplerParams is
// this shape as a distinct type (the wire knows no sampler).
#pragma once

#include <cstdint>

namespace strata {

struct SamplerParams {
  float temperature = 0.8f;
  int32_t top_k = 40;           // <= 0: off
  float top_p = 0.95f;          // >= 1: off
  float min_p = 0.05f;          // <= 0: off
  float repeat_penalty = 1.0f;  // 1: off
  float presence_penalty = 0.0f;
  float frequency_penalty = 0.0f;
  int32_t penalty_last_n = 64;  // tokens looked back on for penalties; 0: off; < 0: all
  uint64_t seed = 0xFFFFFFFFu;  // fixed seed => same output
};

}  // namespace strata
