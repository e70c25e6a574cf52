#include "grammar/matcher.h"

#include <algorithm>
#include <numeric>

#include "tokenizer/tokenizer.h"

namespace strata::grammar {

namespace {
constexpr int kMaxClosureDepth = 2048;
constexpr size_t kMaxFrames = size_t{1} << 21;
constexpr size_t kMaxStates = size_t{1} << 17;
constexpr int32_t kUnknown = -2;
}  // namespace

// ---- Vocabulary ----

TokenVocab::TokenVocab(std::vector<std::string> pieces, const std::vector<bool>& text,
                       std::vector<int32_t> eog)
    : pieces_(std::move(pieces)), eog_(std::move(eog)) {
  std::sort(eog_.begin(), eog_.end());
  text_.assign(pieces_.size(), false);
  for (size_t i = 0; i < pieces_.size(); ++i)
    if (!pieces_[i].empty() && (i >= text.size() || text[i]) && !IsEog(static_cast<int32_t>(i))) {
      order_.push_back(static_cast<int32_t>(i));
      text_[i] = true;
    }
  std::sort(order_.begin(), order_.end(), [this](int32_t a, int32_t b) {
    return pieces_[static_cast<size_t>(a)] < pieces_[static_cast<size_t>(b)];
  });
  lcp_.assign(order_.size(), 0);
  for (size_t i = 0; i < order_.size(); ++i) {
    const std::string& p = pieces_[static_cast<size_t>(order_[i])];
    max_len_ = std::max(max_len_, p.size());
    if (i == 0) continue;
    const std::string& q = pieces_[static_cast<size_t>(order_[i - 1])];
    size_t l = 0;
    while (l < p.size() && l < q.size() && p[l] == q[l]) ++l;
    lcp_[i] = static_cast<uint32_t>(l);
  }
}

std::shared_ptr<const TokenVocab> TokenVocab::FromTokenizer(const Tokenizer& tok) {
  const int32_t n = tok.n_vocab();
  std::vector<std::string> pieces(static_cast<size_t>(n));
  std::vector<bool> text(static_cast<size_t>(n), true);
  for (int32_t i = 0; i < n; ++i) {
    pieces[static_cast<size_t>(i)] = tok.TokenToPiece(i, true);
    if (tok.IsControl(i)) text[static_cast<size_t>(i)] = false;
  }
  return std::make_shared<const TokenVocab>(std::move(pieces), text, tok.eog_ids());
}

bool TokenVocab::IsEog(int32_t id) const {
  return std::binary_search(eog_.begin(), eog_.end(), id);
}

// ---- Automaton ----

Automaton::Automaton(Grammar g, std::shared_ptr<const TokenVocab> vocab)
    : g_(std::move(g)), vocab_(std::move(vocab)) {
  frames_.push_back({-1, 0});  // 0: the bottom
  closures_.emplace_back();
  closure_done_.push_back(true);
}

int32_t Automaton::FrameId(int32_t pos, int32_t parent) {
  const uint64_t key =
      (static_cast<uint64_t>(static_cast<uint32_t>(pos)) << 32) | static_cast<uint32_t>(parent);
  auto it = frame_ids_.find(key);
  if (it != frame_ids_.end()) return it->second;
  if (frames_.size() >= kMaxFrames) {
    overflow_ = true;
    return -1;
  }
  const int32_t id = static_cast<int32_t>(frames_.size());
  frames_.push_back({pos, parent});
  closures_.emplace_back();
  closure_done_.push_back(false);
  frame_ids_.emplace(key, id);
  return id;
}

// The stacks reachable from `frame` without consuming a byte: frames whose element is a byte
// set, or 0 (the grammar is complete).
void Automaton::Closure(int32_t frame, std::vector<int32_t>* out, int depth) {
  if (frame < 0 || depth > kMaxClosureDepth) {
    overflow_ = true;
    return;
  }
  if (closure_done_[static_cast<size_t>(frame)]) {
    const std::vector<int32_t>& c = closures_[static_cast<size_t>(frame)];
    out->insert(out->end(), c.begin(), c.end());
    return;
  }
  std::vector<int32_t> res;
  const Frame f = frames_[static_cast<size_t>(frame)];
  const Elem& e = g_.elems[static_cast<size_t>(f.pos)];
  if (e.kind == Elem::kBytes) {
    res.push_back(frame);
  } else if (e.kind == Elem::kEnd) {
    if (f.parent == 0) {
      res.push_back(0);
    } else {
      Closure(f.parent, &res, depth + 1);
    }
  } else {
    // A reference in tail position returns straight to the parent: repetitions (R ::= x R)
    // keep a constant stack, so their states repeat and their masks are reused.
    const int32_t cont = g_.elems[static_cast<size_t>(f.pos) + 1].kind == Elem::kEnd
                             ? f.parent
                             : FrameId(f.pos + 1, f.parent);
    for (int32_t alt : g_.alts[static_cast<size_t>(e.arg)])
      Closure(FrameId(alt, cont), &res, depth + 1);
  }
  std::sort(res.begin(), res.end());
  res.erase(std::unique(res.begin(), res.end()), res.end());
  out->insert(out->end(), res.begin(), res.end());
  closures_[static_cast<size_t>(frame)] = std::move(res);
  closure_done_[static_cast<size_t>(frame)] = true;
}

int32_t Automaton::SetId(std::vector<int32_t> stacks) {
  if (stacks.empty()) return kDead;
  std::sort(stacks.begin(), stacks.end());
  stacks.erase(std::unique(stacks.begin(), stacks.end()), stacks.end());
  std::string key(reinterpret_cast<const char*>(stacks.data()), stacks.size() * sizeof(int32_t));
  auto it = set_ids_.find(key);
  if (it != set_ids_.end()) return it->second;
  if (sets_.size() >= kMaxStates) {
    overflow_ = true;
    return kDead;
  }
  const int32_t id = static_cast<int32_t>(sets_.size());
  ByteSet first;
  for (int32_t s : stacks)
    if (s != 0) {
      const ByteSet& b = g_.sets[static_cast<size_t>(
          g_.elems[static_cast<size_t>(frames_[static_cast<size_t>(s)].pos)].arg)];
      for (int w = 0; w < 4; ++w)
        first.bits[static_cast<size_t>(w)] |= b.bits[static_cast<size_t>(w)];
    }
  sets_.push_back(std::move(stacks));
  set_ids_.emplace(std::move(key), id);
  std::array<int32_t, 256> t;
  t.fill(kUnknown);
  trans_.push_back(t);
  first_.push_back(first);
  masks_.emplace_back();
  return id;
}

int32_t Automaton::Start() {
  std::lock_guard<std::mutex> lock(mu_);
  if (start_ < 0) {
    std::vector<int32_t> st;
    for (int32_t alt : g_.alts[static_cast<size_t>(g_.root)]) Closure(FrameId(alt, 0), &st, 0);
    start_ = SetId(std::move(st));
  }
  return start_;
}

int32_t Automaton::StepLocked(int32_t state, uint8_t byte) {
  if (state < 0) return kDead;
  int32_t& t = trans_[static_cast<size_t>(state)][byte];
  if (t != kUnknown) return t;
  std::vector<int32_t> next;
  if (first_[static_cast<size_t>(state)].Has(byte)) {
    const std::vector<int32_t> cur = sets_[static_cast<size_t>(state)];  // sets_ may grow
    for (int32_t s : cur) {
      if (s == 0) continue;
      const Frame f = frames_[static_cast<size_t>(s)];
      if (!g_.sets[static_cast<size_t>(g_.elems[static_cast<size_t>(f.pos)].arg)].Has(byte))
        continue;
      Closure(FrameId(f.pos + 1, f.parent), &next, 0);
    }
  }
  const int32_t id = SetId(std::move(next));
  trans_[static_cast<size_t>(state)][byte] = id;  // (the reference may have moved)
  return id;
}

int32_t Automaton::Step(int32_t state, uint8_t byte) {
  std::lock_guard<std::mutex> lock(mu_);
  return StepLocked(state, byte);
}

bool Automaton::Accepting(int32_t state) {
  if (state < 0) return false;
  std::lock_guard<std::mutex> lock(mu_);
  const std::vector<int32_t>& s = sets_[static_cast<size_t>(state)];
  return !s.empty() && s[0] == 0;
}

bool Automaton::CanContinue(int32_t state) {
  if (state < 0) return false;
  std::lock_guard<std::mutex> lock(mu_);
  const ByteSet& b = first_[static_cast<size_t>(state)];
  return (b.bits[0] | b.bits[1] | b.bits[2] | b.bits[3]) != 0;
}

bool Automaton::HasMask(int32_t state) {
  if (state < 0) return false;
  std::lock_guard<std::mutex> lock(mu_);
  return masks_[static_cast<size_t>(state)] != nullptr;
}

void Automaton::DropMasks() {
  std::lock_guard<std::mutex> lock(mu_);
  for (auto& m : masks_) m.reset();
}

size_t Automaton::n_states() {
  std::lock_guard<std::mutex> lock(mu_);
  return sets_.size();
}

std::shared_ptr<const TokenMask> Automaton::Mask(int32_t state) {
  std::lock_guard<std::mutex> lock(mu_);
  if (state < 0) return std::make_shared<const TokenMask>((vocab_->n_vocab() + 63) / 64, 0);
  if (auto m = masks_[static_cast<size_t>(state)]) return m;
  auto m = ComputeMask(state);
  masks_[static_cast<size_t>(state)] = m;
  return m;
}

// Walks the tokens in byte order: depth[k] is the state after the first k bytes of the
// current token, valid for k <= valid; a token whose common prefix with the previous one
// reaches past a dead byte is rejected without a look.
std::shared_ptr<const TokenMask> Automaton::ComputeMask(int32_t state) {
  const TokenVocab& v = *vocab_;
  auto mask = std::make_shared<TokenMask>((static_cast<size_t>(v.n_vocab()) + 63) / 64, 0);
  std::vector<int32_t> depth(v.max_len_ + 1, kDead);
  depth[0] = state;
  size_t valid = 0;
  for (size_t i = 0; i < v.order_.size(); ++i) {
    const int32_t id = v.order_[i];
    const std::string& p = v.pieces_[static_cast<size_t>(id)];
    const size_t l = v.lcp_[i];
    if (l > valid) continue;  // shares a dead prefix
    size_t k = l;
    int32_t s = depth[k];
    for (; k < p.size(); ++k) {
      int32_t n = trans_[static_cast<size_t>(s)][static_cast<uint8_t>(p[k])];
      if (n == kUnknown) n = StepLocked(s, static_cast<uint8_t>(p[k]));
      if (n == kDead) break;
      s = n;
      depth[k + 1] = s;
    }
    valid = k;
    if (k == p.size()) (*mask)[static_cast<size_t>(id) >> 6] |= uint64_t{1} << (id & 63);
  }
  const std::vector<int32_t>& st = sets_[static_cast<size_t>(state)];
  if (!st.empty() && st[0] == 0)
    for (int32_t id : v.eog_) (*mask)[static_cast<size_t>(id) >> 6] |= uint64_t{1} << (id & 63);
  return mask;
}

// ---- Matcher ----

bool Matcher::AcceptBytes(std::string_view bytes) {
  int32_t s = state_;
  for (char c : bytes) {
    s = a_->Step(s, static_cast<uint8_t>(c));
    if (s == Automaton::kDead) return false;
  }
  state_ = s;
  return true;
}

bool Matcher::AcceptToken(int32_t id) {
  if (finished_ || id < 0 || id >= a_->vocab().n_vocab()) return false;
  if (a_->vocab().IsEog(id)) {
    if (!Accepting()) return false;
    finished_ = true;
    return true;
  }
  if (!a_->vocab().IsText(id)) return false;
  return AcceptBytes(a_->vocab().piece(id));
}

}  // namespace strata::grammar
