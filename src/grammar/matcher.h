// Matching a compiled grammar over bytes and tokens, and token masks.
//
// The grammar's pushdown stacks are hash-consed (a stack is a frame id: element position plus
// parent frame), a matcher state is an interned set of stacks, and the transition of a state
// over a byte is computed once and then cached (a lazily built DFA over the stack sets).
// A token mask walks the vocabulary sorted by bytes, sharing the work of common prefixes
// (a trie walk) and pruning every token below a dead prefix; masks are cached per state.
// One Automaton serves every request using the same grammar (thread-safe).
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "base/status.h"
#include "grammar/gbnf.h"

namespace strata {
class Tokenizer;
}

namespace strata::grammar {

// A bitmask over the vocabulary: bit id set = the token is allowed.
using TokenMask = std::vector<uint64_t>;
inline bool MaskHas(const TokenMask& m, int32_t id) {
  return (m[static_cast<size_t>(id) >> 6] >> (id & 63)) & 1;
}

// The vocabulary as masks need it: every token's bytes, sorted, with common-prefix lengths.
class TokenVocab {
 public:
  // pieces[id]: the token's bytes; text[id]: may appear as text (false: control tokens);
  // eog: end-of-generation ids (allowed when the grammar is complete).
  TokenVocab(std::vector<std::string> pieces, const std::vector<bool>& text,
             std::vector<int32_t> eog);
  static std::shared_ptr<const TokenVocab> FromTokenizer(const Tokenizer& tok);

  int32_t n_vocab() const { return static_cast<int32_t>(pieces_.size()); }
  const std::string& piece(int32_t id) const { return pieces_[static_cast<size_t>(id)]; }
  bool IsEog(int32_t id) const;
  bool IsText(int32_t id) const { return text_[static_cast<size_t>(id)]; }
  const std::vector<int32_t>& eog() const { return eog_; }

 private:
  friend class Automaton;
  std::vector<std::string> pieces_;
  std::vector<int32_t> order_;  // text tokens sorted by bytes
  std::vector<uint32_t> lcp_;   // common prefix of order_[i] with order_[i - 1]
  std::vector<int32_t> eog_;    // sorted
  std::vector<bool> text_;      // may appear as text (in order_)
  size_t max_len_ = 0;
};

class Automaton {
 public:
  static constexpr int32_t kDead = -1;
  Automaton(Grammar g, std::shared_ptr<const TokenVocab> vocab);

  int32_t Start();
  int32_t Step(int32_t state, uint8_t byte);
  bool Accepting(int32_t state);    // the grammar may end here
  bool CanContinue(int32_t state);  // some byte may follow
  // The tokens allowed in `state` (end-of-generation ones only when Accepting).
  std::shared_ptr<const TokenMask> Mask(int32_t state);
  bool HasMask(int32_t state);  // Mask(state) is cached
  const TokenVocab& vocab() const { return *vocab_; }
  size_t n_states();
  // Forgets the cached masks (not the transitions): for measurements.
  void DropMasks();

 private:
  struct Frame {
    int32_t pos;     // element index
    int32_t parent;  // frame id; 0: the bottom
  };
  int32_t FrameId(int32_t pos, int32_t parent);
  void Closure(int32_t frame, std::vector<int32_t>* out, int depth);
  int32_t SetId(std::vector<int32_t> stacks);
  int32_t StepLocked(int32_t state, uint8_t byte);
  std::shared_ptr<const TokenMask> ComputeMask(int32_t state);

  const Grammar g_;
  const std::shared_ptr<const TokenVocab> vocab_;
  std::mutex mu_;
  std::vector<Frame> frames_;
  std::unordered_map<uint64_t, int32_t> frame_ids_;
  std::vector<std::vector<int32_t>> closures_;  // per frame, once computed (lazy)
  std::vector<bool> closure_done_;
  std::vector<std::vector<int32_t>> sets_;  // per state: sorted stack (frame) ids; 0 = end
  std::unordered_map<std::string, int32_t> set_ids_;
  std::vector<std::array<int32_t, 256>> trans_;
  std::vector<ByteSet> first_;  // per state: bytes that may follow
  std::vector<std::shared_ptr<const TokenMask>> masks_;
  int32_t start_ = -1;
  bool overflow_ = false;
};

// One generation's position in a grammar.
class Matcher {
 public:
  explicit Matcher(std::shared_ptr<Automaton> a) : a_(std::move(a)), state_(a_->Start()) {}
  // Advances over a token; false (state unchanged) when the grammar does not allow it.
  bool AcceptToken(int32_t id);
  bool AcceptBytes(std::string_view bytes);
  bool Accepting() const { return a_->Accepting(state_); }
  bool CanContinue() const { return a_->CanContinue(state_); }
  bool finished() const { return finished_; }  // an end-of-generation token was accepted
  std::shared_ptr<const TokenMask> Mask() const { return a_->Mask(state_); }
  bool MaskReady() const { return a_->HasMask(state_); }
  Automaton& automaton() const { return *a_; }
  const std::shared_ptr<Automaton>& shared_automaton() const { return a_; }
  int32_t state() const { return state_; }

 private:
  std::shared_ptr<Automaton> a_;
  int32_t state_;
  bool finished_ = false;
};

}  // namespace strata::grammar
