// Helpers shared by the KV cache kernel tests (kv_quant_test.cc, split_kv_test.cc).
#pragma once

#include <cstdint>
#include <random>
#include <vector>

namespace strata::kernels::kvtest {

// n floats drawn from N(0, scale^2) with a fixed seed.
inline std::vector<float> RandomNormal(size_t n, uint32_t seed, float scale = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0.0f, scale);
  std::vector<float> v(n);
  for (float& x : v) x = d(rng);
  return v;
}

}  // namespace strata::kernels::kvtest
