// Private to the tokenizer module: the symbol-merge loop shared by the two BPE flavours
// (bpe.cc: merge ranks; spm.cc: token scores).
#pragma once

#include <algorithm>
#include <cstdint>
#include <queue>
#include <string_view>
#include <vector>

#include "tokenizer/pretokenize.h"

namespace strata::tok {

// Splits text into one symbol per UTF-8 character, then repeatedly merges the adjacent pair
// with the highest priority (leftmost on ties), re-scoring the new symbol's neighbours, until
// no pair is left that `priority` accepts. Calls emit(symbol) for each final symbol in order.
//   priority(left, right) -> std::optional<P>: nullopt when the pair may not merge; P is any
//   ordered type (BPE passes the negated merge rank, SentencePiece the token score).
template <class Priority, class Emit>
void MergeSymbols(std::string_view text, Priority&& priority, Emit&& emit) {
  using P = typename decltype(priority(text, text))::value_type;
  struct Symbol {
    uint32_t start, len;
    int32_t prev, next;
  };
  struct Pair {
    P priority;
    int32_t left, right;
    uint32_t left_len, right_len;  // lengths when queued; a change means the pair is stale
  };
  struct Worse {
    bool operator()(const Pair& a, const Pair& b) const {
      return a.priority < b.priority || (!(b.priority < a.priority) && a.left > b.left);
    }
  };

  std::vector<Symbol> syms;
  for (size_t i = 0; i < text.size();) {
    const size_t len = std::min(Utf8SeqLen(static_cast<unsigned char>(text[i])), text.size() - i);
    const auto idx = static_cast<int32_t>(syms.size());
    syms.push_back(Symbol{static_cast<uint32_t>(i), static_cast<uint32_t>(len), idx - 1, idx + 1});
    i += len;
  }
  if (syms.empty()) return;
  syms.back().next = -1;

  auto sym = [&](int32_t i) -> Symbol& { return syms[static_cast<size_t>(i)]; };
  auto view = [&](const Symbol& s) { return text.substr(s.start, s.len); };
  std::priority_queue<Pair, std::vector<Pair>, Worse> queue;
  auto try_pair = [&](int32_t l, int32_t r) {
    if (l < 0 || r < 0) return;
    auto p = priority(view(sym(l)), view(sym(r)));
    if (!p) return;
    queue.push(Pair{*p, l, r, sym(l).len, sym(r).len});
  };
  for (int32_t i = 1; i < static_cast<int32_t>(syms.size()); ++i) try_pair(i - 1, i);

  while (!queue.empty()) {
    const Pair p = queue.top();
    queue.pop();
    Symbol& l = sym(p.left);
    Symbol& r = sym(p.right);
    if (l.len == 0 || r.len == 0 || l.len != p.left_len || r.len != p.right_len) continue;
    l.len += r.len;
    r.len = 0;
    l.next = r.next;
    if (r.next >= 0) sym(r.next).prev = p.left;
    try_pair(l.prev, p.left);
    try_pair(p.left, l.next);
  }

  for (int32_t i = 0; i >= 0; i = sym(i).next) emit(view(sym(i)));
}

}  // namespace strata::tok
