// Byte-level BPE (tokenizer.ggml.model == "gpt2"): the text is split by the pre-tokenizer
// regex, each word is byte-encoded with the GPT-2 table and then merged pair by pair, always
// applying the pair with the lowest merge rank first (leftmost on ties).
#include <optional>

#include "tokenizer/merge.h"
#include "tokenizer/pretokenize.h"
#include "tokenizer/tokenizer_impl.h"

namespace strata::tok {
namespace {

class BpeTokenizer final : public Tokenizer {
  Status LoadModel(const gguf::File& file) override;
  void EncodeText(std::string_view text, bool after_special,
                  std::vector<int32_t>* out) const override;
  void EncodeWord(const std::string& word, std::vector<int32_t>* out) const;
  int32_t Rank(std::string_view left, std::string_view right, std::string* key) const;

  std::unique_ptr<PreTokenizer> pretok_;
  bool ignore_merges_ = false;  // Llama 3: a word that is a token is taken whole
  // "left right" -> merge rank (position in tokenizer.ggml.merges).
  std::unordered_map<std::string, int32_t, StringHash, std::equal_to<>> ranks_;
};

Status BpeTokenizer::LoadModel(const gguf::File& file) {
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
      case TokenType::kUserDefined: pieces_[id] = text; break;
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
      case TokenType::kUnused: break;  // no text, as in llama.cpp
    }
  }
  return Status::Ok();
}

void BpeTokenizer::EncodeText(std::string_view text, bool /*after_special*/,
                              std::vector<int32_t>* out) const {
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

int32_t BpeTokenizer::Rank(std::string_view left, std::string_view right, std::string* key) const {
  key->assign(left);
  key->push_back(' ');
  key->append(right);
  auto it = ranks_.find(*key);
  return it == ranks_.end() ? -1 : it->second;
}

void BpeTokenizer::EncodeWord(const std::string& word, std::vector<int32_t>* out) const {
  std::string key;
  auto priority = [&](std::string_view left, std::string_view right) -> std::optional<int32_t> {
    const int32_t rank = Rank(left, right, &key);
    if (rank < 0) return std::nullopt;
    return -rank;  // the lowest rank merges first
  };
  MergeSymbols(word, priority, [&](std::string_view s) {
    auto it = token_to_id_.find(s);
    if (it != token_to_id_.end()) {
      out->push_back(it->second);
      return;
    }
    // Not in the vocabulary: fall back to single-byte tokens where they exist (llama.cpp).
    for (char c : s) {
      auto bt = token_to_id_.find(std::string_view(&c, 1));
      if (bt != token_to_id_.end()) out->push_back(bt->second);
    }
  });
}

}  // namespace

Result<std::unique_ptr<Tokenizer>> NewBpeTokenizer(const gguf::File& file) {
  return LoadTokenizer<BpeTokenizer>(file);
}

}  // namespace strata::tok
