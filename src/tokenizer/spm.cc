// SentencePiece-style BPE (tokenizer.ggml.model == "llama"): spaces become "▁", the text
// starts as one symbol per UTF-8 character, and adjacent symbols whose concatenation is a
// token are merged, highest token score first (leftmost on ties). Symbols that are not
// tokens are emitted as byte tokens <0xXX>.
#include <cstdio>
#include <queue>

#include "tokenizer/pretokenize.h"
#include "tokenizer/tokenizer_impl.h"

namespace strata::tok {
namespace {

constexpr std::string_view kSpace = "\xE2\x96\x81";  // "▁"

class SpmTokenizer final : public Tokenizer {
 public:
  Status Load(const gguf::File& file);

  std::vector<int32_t> EncodeFragments(const std::vector<Fragment>& frags,
                                       bool add_special) const override;
  std::string TokenToPiece(int32_t id, bool special) const override {
    return CachedPiece(id, special);
  }

 private:
  void EncodeText(const std::string& text, std::vector<int32_t>* out) const;
  void EmitBytes(std::string_view s, std::vector<int32_t>* out) const;

  std::vector<float> scores_;
  int32_t byte_tokens_[256];  // token for each byte (<0xXX>), -1 when absent
};

// Parses "<0xXX>"; -1 when text is not of that form.
int ParseByteToken(std::string_view text) {
  if (text.size() != 6 || text.substr(0, 3) != "<0x" || text[5] != '>') return -1;
  auto hex = [](char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
  };
  const int hi = hex(text[3]), lo = hex(text[4]);
  return (hi < 0 || lo < 0) ? -1 : hi * 16 + lo;
}

Status SpmTokenizer::Load(const gguf::File& file) {
  STRATA_RETURN_IF_ERROR(LoadCommon(file));
  const size_t n = tokens_.size();
  scores_.assign(n, 0.0f);
  if (file.Has("tokenizer.ggml.scores")) {
    STRATA_ASSIGN_OR_RETURN(std::vector<float> scores,
                            file.GetFloatArray("tokenizer.ggml.scores"));
    if (scores.size() != n) {
      return Errorf("tokenizer.ggml.scores has %zu entries but there are %zu tokens",
                    scores.size(), n);
    }
    scores_ = std::move(scores);
  }

  for (int b = 0; b < 256; ++b) {
    char name[8];
    std::snprintf(name, sizeof(name), "<0x%02X>", b);
    auto it = token_to_id_.find(std::string_view(name));
    if (it == token_to_id_.end()) {
      const char c = static_cast<char>(b);
      it = token_to_id_.find(std::string_view(&c, 1));
    }
    byte_tokens_[b] = it == token_to_id_.end() ? -1 : it->second;
  }

  pieces_.assign(n, std::string());
  for (size_t id = 0; id < n; ++id) {
    const std::string& text = tokens_[id];
    switch (types_[id]) {
      case TokenType::kControl:
      case TokenType::kUnknown:
      case TokenType::kUserDefined:
        pieces_[id] = text;
        break;
      case TokenType::kNormal: {
        std::string& piece = pieces_[id];
        for (size_t i = 0; i < text.size();) {
          if (text.compare(i, kSpace.size(), kSpace) == 0) {
            piece.push_back(' ');
            i += kSpace.size();
          } else {
            piece.push_back(text[i++]);
          }
        }
        break;
      }
      case TokenType::kByte: {
        const int b = ParseByteToken(text);
        if (b < 0) return Errorf("byte token %zu has text '%s', expected <0xXX>", id, text.c_str());
        pieces_[id] = std::string(1, static_cast<char>(b));
        break;
      }
      case TokenType::kUndefined:
      case TokenType::kUnused:
        break;
    }
  }
  return Status::Ok();
}

std::vector<int32_t> SpmTokenizer::EncodeFragments(const std::vector<Fragment>& frags,
                                                   bool add_special) const {
  std::vector<int32_t> out;
  size_t bytes = 0;
  for (const Fragment& f : frags) bytes += f.text.size();
  out.reserve(bytes / 3 + 4);
  if (add_special && add_bos_) out.push_back(bos_);
  bool prev_special = true;  // the start of the input counts as following a special token
  std::string buf;
  for (const Fragment& f : frags) {
    if (f.token >= 0) {
      out.push_back(f.token);
      prev_special = true;
      continue;
    }
    buf.clear();
    if (add_space_prefix_ && prev_special) buf.append(kSpace);
    for (char c : f.text) {
      if (c == ' ') {
        buf.append(kSpace);
      } else {
        buf.push_back(c);
      }
    }
    EncodeText(buf, &out);
    prev_special = false;
  }
  if (add_special && add_eos_) out.push_back(eos_);
  return out;
}

void SpmTokenizer::EmitBytes(std::string_view s, std::vector<int32_t>* out) const {
  for (char c : s) {
    const int32_t id = byte_tokens_[static_cast<uint8_t>(c)];
    if (id >= 0) {
      out->push_back(id);
    } else if (unk_ >= 0) {
      out->push_back(unk_);
    }
  }
}

void SpmTokenizer::EncodeText(const std::string& text, std::vector<int32_t>* out) const {
  struct Symbol {
    uint32_t start, len;
    int32_t prev, next;
  };
  struct Pair {
    float score;
    int32_t left, right;
    uint32_t len;  // combined length when queued; a change means the pair is stale
  };
  struct Lower {
    bool operator()(const Pair& a, const Pair& b) const {
      return a.score < b.score || (a.score == b.score && a.left > b.left);
    }
  };

  std::vector<Symbol> syms;
  for (size_t i = 0; i < text.size();) {
    const size_t len =
        std::min(Utf8SeqLen(static_cast<unsigned char>(text[i])), text.size() - i);
    const auto idx = static_cast<int32_t>(syms.size());
    syms.push_back(Symbol{static_cast<uint32_t>(i), static_cast<uint32_t>(len), idx - 1, idx + 1});
    i += len;
  }
  if (syms.empty()) return;
  syms.back().next = -1;

  std::priority_queue<Pair, std::vector<Pair>, Lower> queue;
  auto try_pair = [&](int32_t l, int32_t r) {
    if (l < 0 || r < 0) return;
    const Symbol& a = syms[static_cast<size_t>(l)];
    const Symbol& b = syms[static_cast<size_t>(r)];
    auto it = token_to_id_.find(std::string_view(text).substr(a.start, a.len + b.len));
    if (it == token_to_id_.end()) return;
    queue.push(Pair{scores_[static_cast<size_t>(it->second)], l, r, a.len + b.len});
  };
  for (int32_t i = 1; i < static_cast<int32_t>(syms.size()); ++i) try_pair(i - 1, i);

  while (!queue.empty()) {
    const Pair p = queue.top();
    queue.pop();
    Symbol& l = syms[static_cast<size_t>(p.left)];
    Symbol& r = syms[static_cast<size_t>(p.right)];
    if (l.len == 0 || r.len == 0 || l.len + r.len != p.len) continue;
    l.len += r.len;
    r.len = 0;
    l.next = r.next;
    if (r.next >= 0) syms[static_cast<size_t>(r.next)].prev = p.left;
    try_pair(l.prev, p.left);
    try_pair(p.left, l.next);
  }

  for (int32_t i = 0; i >= 0; i = syms[static_cast<size_t>(i)].next) {
    const Symbol& s = syms[static_cast<size_t>(i)];
    const std::string_view piece = std::string_view(text).substr(s.start, s.len);
    auto it = token_to_id_.find(piece);
    if (it != token_to_id_.end()) {
      out->push_back(it->second);
    } else {
      EmitBytes(piece, out);  // merged symbols are always tokens, so this is one character
    }
  }
}

}  // namespace

Result<std::unique_ptr<Tokenizer>> NewSpmTokenizer(const gguf::File& file) {
  std::unique_ptr<SpmTokenizer> tok(new SpmTokenizer());
  STRATA_RETURN_IF_ERROR(tok->Load(file));
  return std::unique_ptr<Tokenizer>(std::move(tok));
}

}  // namespace strata::tok
