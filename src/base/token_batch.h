// The rows of a batch of tokens as the engine runs them and the stage protocol carries them:
// model/forward.h's Batch and net/protocol.h's WireBatch are both this shape, as distinct types
// (the wire knows no model).
#pragma once

#include <cstdint>
#include <vector>

namespace strata {

struct TokenBatch {
  std::vector<int32_t> tokens;  // [n] token ids (used when the range starts at layer 0)
  std::vector<int32_t> pos;     // [n] position of each token in its sequence
  std::vector<int32_t> seq;     // [n] KV cache slot of each token
  std::vector<uint8_t> output;  // [n] 1: produce this token's row (logits / sampled token)

  int size() const { return static_cast<int>(pos.size()); }
  void Add(int32_t token, int32_t position, int32_t seq_id, bool want_output) {
    tokens.push_back(token);
    pos.push_back(position);
    seq.push_back(seq_id);
    output.push_back(want_output ? 1 : 0);
  }
  void Clear() {
    tokens.clear();
    pos.clear();
    seq.clear();
    output.clear();
  }
};

}  // namespace strata
