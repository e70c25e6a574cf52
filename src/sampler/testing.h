// Sampler settings the tests share (sampler, runtime): greedy, and plain softmax sampling.
#pragma once

#include "sampler/sampler.h"

namespace strata::testdata {

// Greedy: the most likely token.
inline SamplerParams GreedySampling() { return SamplerParams{.temperature = 0}; }

// Everything off (the penalties are by default): plain softmax sampling at temperature 1.
inline SamplerParams PlainSampling() {
  return SamplerParams{.temperature = 1.0f, .top_k = 0, .top_p = 1.0f, .min_p = 0.0f};
}

}  // namespace strata::testdata
