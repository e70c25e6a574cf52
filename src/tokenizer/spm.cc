// SentencePiece-style BPE (tokenizer.ggml.model == "llama"): spaces become "▁", the text
// starts as one symbol per UTF-8 character, and adjacent symbols whose concatenation is a
// token are merged, highest token score first (leftmost on ties). Symbols that are not
// tokens are emitted as byte tokens <0xXX>.
#include <cstdio>
#include <optional>

#include "tokenizer/merge.h"
#include "tokenizer/pretokenize.h"
#include "tokenizer/tokenizer_impl.h"

namespace strata::tok {
namespace {

constexpr std::string_view kSpace = "\xE2\x96\x81";  // "▁"

class SpmTokenizer final : public Tokenizer {
  Status LoadModel(const gguf::File& file) override;
  void EncodeText(std::string_view text, bool after_special,
                  std::vector<int32_t>* out) const override;
  void EncodeEscaped(std::string_view text, std::vector<int32_t>* out) const;
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

Status SpmTokenizer::LoadModel(const gguf::File& file) {
  const size_t n = tokens_.size();
  scores_.assign(n, 0.0f);
  if (file.Has("tokenizer.ggml.scores")) {
    STRATA_ASSIGN_OR_RETURN(std::vector<float> scores, file.GetFloatArray("tokenizer.ggml.scores"));
    if (scores.size() != n) {
      return Errorf("tokenizer.ggml.scores has %zu entries but there are %zu tokens", scores.size(),
                    n);
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
      case TokenType::kUserDefined: pieces_[id] = text; break;
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
      case TokenType::kUnused: break;
    }
  }
  return Status::Ok();
}

void SpmTokenizer::EncodeText(std::string_view text, bool after_special,
                              std::vector<int32_t>* out) const {
  std::string buf;
  buf.reserve(text.size() + kSpace.size());
  if (add_space_prefix_ && after_special) buf.append(kSpace);
  for (char c : text) {
    if (c == ' ') {
      buf.append(kSpace);
    } else {
      buf.push_back(c);
    }
  }
  EncodeEscaped(buf, out);
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

void SpmTokenizer::EncodeEscaped(std::string_view text, std::vector<int32_t>* out) const {
  // Two adjacent symbols are contiguous in text: their concatenation is one view of it.
  auto priority = [&](std::string_view left, std::string_view right) -> std::optional<float> {
    auto it = token_to_id_.find(std::string_view(left.data(), left.size() + right.size()));
    if (it == token_to_id_.end()) return std::nullopt;
    return scores_[static_cast<size_t>(it->second)];
  };
  MergeSymbols(text, priority, [&](std::string_view piece) {
    auto it = token_to_id_.find(piece);
    if (it != token_to_id_.end()) {
      out->push_back(it->second);
    } else {
      EmitBytes(piece, out);  // merged symbols are always tokens, so this is one character
    }
  });
}

}  // namespace

Result<std::unique_ptr<Tokenizer>> NewSpmTokenizer(const gguf::File& file) {
  return LoadTokenizer<SpmTokenizer>(file);
}

}  // namespace strata::tok
