// Byte-level BPE (tokenizer.ggml.model == "gpt2"): the text is split by the pre-tokenizer
// regex, each word is byte-encoded with the GPT-2 table and then merged pair by pair, always
// applying the pair with the lowest merge rank first (leftmost on ties).
#include <queue>

#include "tokenizer/pretokenize.h"
#include "tokenizer/tokenizer_impl.h"

namespace strata::tok {
namespace {

class BpeTokenizer final : public Tokenizer {
 public:
  Status Load(const gguf::File& file);

  std::vector<int32_t> EncodeFragments(const std::vector<Fragment>& frags,
                                       bool add_special) const override;
  std::string TokenToPiece(int32_t id, bool special) const override {
    return CachedPiece(id, special);
  }

 private:
  void EncodeText(std::string_view text, std::vector<int32_t>* out) const;
  void EncodeWord(const std::string& word, std::vector<int32_t>* out) const;
  int32_t Rank(std::string_view left, std::string_view right, std::string* key) const;

  std::unique_ptr<PreTokenizer> pretok_;
  bool ignore_merges_ = false;  // Llama 3: a word that is a token is taken whole
  // "left right" -> merge rank (position in tokenizer.ggml.merges).
  std::unordered_map<std::string, int32_t, StringHash, std::equal_to<>> ranks_;
};

Status BpeTokenizer::Load(const gguf::File& file) {
  STRATA_RETURN_IF_ERROR(LoadCommon(file));
  STRATA_ASSIGN_OR_RETURN(PreType pre, PreTypeFromName(pre_));
  STRATA_ASSIGN_OR_RETURN(pretok_, PreTokenizer::Create(pre));
  ignore_merges_ = pre == PreType::kLlama3;

  const gguf::MetaEntry* merges = file.Find("tokenizer.ggml.merges");
  if (!merges) return Status::Error("missing metadata key tokenizer.ggml.merges");
  if (merges->value.type != gguf::ValueType::kArray ||
      merges->value.elem_type != gguf::ValueType::kString) {
    return Status::Error("tokenizer.ggml.merges must be an array of strings");
  }
  const auto& list = merges->value.str_elems;
  ranks_.reserve(list.size());
  for (size_t i = 0; i < list.size(); ++i) {
    const std::string_view m = list[i];
    // The separator is the first space after the first character (a part may start with
    // a space in non-byte-level vocabularies).
    const size_t sp = m.size() > 1 ? m.find(' ', 1) : std::string_view::npos;
    if (sp == std::string_view::npos || sp + 1 >= m.size()) {
      return Errorf("tokenizer.ggml.merges[%zu] = '%s' is not of the form 'left right'", i,
                    std::string(m).c_str());
    }
    ranks_.emplace(std::string(m), static_cast<int32_t>(i));  // first occurrence wins
  }

  // Pieces: normal tokens are byte-decoded; special and user-defined ones are literal.
  pieces_.assign(tokens_.size(), std::string());
  for (size_t id = 0; id < tokens_.size(); ++id) {
    const std::string& text = tokens_[id];
    switch (types_[id]) {
      case TokenType::kControl:
      case TokenType::kUnknown:
      case TokenType::kUserDefined:
        pieces_[id] = text;
        break;
      case TokenType::kNormal:
      case TokenType::kByte: {
        std::string& piece = pieces_[id];
        for (size_t i = 0; i < text.size();) {
          const int len = Utf8Check(text, i);
          if (len <= 0) {  // not UTF-8: keep the byte as is
            piece.push_back(text[i]);
            ++i;
            continue;
          }
          const auto* s = reinterpret_cast<const unsigned char*>(text.data() + i);
          uint32_t cp = len == 1   ? s[0]
                        : len == 2 ? ((s[0] & 0x1Fu) << 6) | (s[1] & 0x3Fu)
                                   : 0x110000;  // longer sequences are never in the table
          const int b = UnicodeToByte(cp);
          if (b >= 0) {
            piece.push_back(static_cast<char>(b));
          } else {  // not a byte-level character: keep it verbatim
            piece.append(text, i, static_cast<size_t>(len));
          }
          i += static_cast<size_t>(len);
        }
        break;
      }
      case TokenType::kUndefined:
      case TokenType::kUnused:
        break;  // no text, as in llama.cpp
    }
  }
  return Status::Ok();
}

std::vector<int32_t> BpeTokenizer::EncodeFragments(const std::vector<Fragment>& frags,
                                                   bool add_special) const {
  std::vector<int32_t> out;
  size_t bytes = 0;
  for (const Fragment& f : frags) bytes += f.text.size();
  out.reserve(bytes / 3 + 4);
  if (add_special && add_bos_) out.push_back(bos_);
  for (const Fragment& f : frags) {
    if (f.token >= 0) {
      out.push_back(f.token);
    } else {
      EncodeText(f.text, &out);
    }
  }
  if (add_special && add_eos_) out.push_back(eos_);
  return out;
}

void BpeTokenizer::EncodeText(std::string_view text, std::vector<int32_t>* out) const {
  const std::string clean = SanitizeUtf8(text);
  std::string word;
  for (std::string_view w : pretok_->Split(clean)) {
    word = ByteEncode(w);
    if (ignore_merges_) {
      auto it = token_to_id_.find(word);
      if (it != token_to_id_.end()) {
        out->push_back(it->second);
        continue;
      }
    }
    EncodeWord(word, out);
  }
}

int32_t BpeTokenizer::Rank(std::string_view left, std::string_view right,
                           std::string* key) const {
  key->assign(left);
  key->push_back(' ');
  key->append(right);
  auto it = ranks_.find(*key);
  return it == ranks_.end() ? -1 : it->second;
}

void BpeTokenizer::EncodeWord(const std::string& word, std::vector<int32_t>* out) const {
  struct Symbol {
    uint32_t start, len;
    int32_t prev, next;
  };
  struct Pair {
    int32_t rank, left, right;
    uint32_t left_len, right_len;  // lengths when queued; a change means the pair is stale
  };
  struct Later {
    bool operator()(const Pair& a, const Pair& b) const {
      return a.rank > b.rank || (a.rank == b.rank && a.left > b.left);
    }
  };

  std::vector<Symbol> syms;
  for (size_t i = 0; i < word.size();) {
    const size_t len =
        std::min(Utf8SeqLen(static_cast<unsigned char>(word[i])), word.size() - i);
    const auto idx = static_cast<int32_t>(syms.size());
    syms.push_back(Symbol{static_cast<uint32_t>(i), static_cast<uint32_t>(len), idx - 1, idx + 1});
    i += len;
  }
  if (syms.empty()) return;
  syms.back().next = -1;

  std::string key;
  std::priority_queue<Pair, std::vector<Pair>, Later> queue;
  auto view = [&](const Symbol& s) { return std::string_view(word).substr(s.start, s.len); };
  auto try_pair = [&](int32_t l, int32_t r) {
    if (l < 0 || r < 0) return;
    const int32_t rank = Rank(view(syms[static_cast<size_t>(l)]),
                              view(syms[static_cast<size_t>(r)]), &key);
    if (rank < 0) return;
    queue.push(Pair{rank, l, r, syms[static_cast<size_t>(l)].len,
                    syms[static_cast<size_t>(r)].len});
  };
  for (int32_t i = 1; i < static_cast<int32_t>(syms.size()); ++i) try_pair(i - 1, i);

  while (!queue.empty()) {
    const Pair p = queue.top();
    queue.pop();
    Symbol& l = syms[static_cast<size_t>(p.left)];
    Symbol& r = syms[static_cast<size_t>(p.right)];
    if (l.len == 0 || r.len == 0 || l.len != p.left_len || r.len != p.right_len) continue;
    l.len += r.len;
    r.len = 0;
    l.next = r.next;
    if (r.next >= 0) syms[static_cast<size_t>(r.next)].prev = p.left;
    try_pair(l.prev, p.left);
    try_pair(p.left, l.next);
  }

  for (int32_t i = 0; i >= 0; i = syms[static_cast<size_t>(i)].next) {
    const std::string_view s = view(syms[static_cast<size_t>(i)]);
    auto it = token_to_id_.find(s);
    if (it != token_to_id_.end()) {
      out->push_back(it->second);
      continue;
    }
    // Not in the vocabulary: fall back to single-byte tokens where they exist (llama.cpp).
    for (char c : s) {
      auto bt = token_to_id_.find(std::string_view(&c, 1));
      if (bt != token_to_id_.end()) out->push_back(bt->second);
    }
  }
}

}  // namespace

Result<std::unique_ptr<Tokenizer>> NewBpeTokenizer(const gguf::File& file) {
  std::unique_ptr<BpeTokenizer> tok(new BpeTokenizer());
  STRATA_RETURN_IF_ERROR(tok->Load(file));
  return std::unique_ptr<Tokenizer>(std::move(tok));
}

}  // namespace strata::tok
