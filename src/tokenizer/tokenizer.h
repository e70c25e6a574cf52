// Tokenizers built from GGUF metadata (tokenizer.ggml.*):
//   model "gpt2":  byte-level BPE with a pre-tokenizer chosen by tokenizer.ggml.pre
//                  ("qwen2", "deepseek-r1-qwen", "llama-bpe"/"llama3", ...)
//   model "llama": SentencePiece-style BPE over scores, with byte fallback (<0xXX> tokens)
// Behaviour matches llama.cpp's llama-vocab for these models.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "base/status.h"
#include "gguf/gguf.h"

namespace strata {

// llama.cpp's token attributes (tokenizer.ggml.token_type values).
enum class TokenType : int32_t {
  kUndefined = 0,
  kNormal = 1,
  kUnknown = 2,
  kControl = 3,
  kUserDefined = 4,
  kUnused = 5,
  kByte = 6,
};

// A byte range [begin, end) of a text.
struct TextSpan {
  size_t begin = 0;
  size_t end = 0;
};

class Tokenizer;
namespace tok {
template <class T>
Result<std::unique_ptr<Tokenizer>> LoadTokenizer(const gguf::File& file);  // tokenizer_impl.h
}  // namespace tok

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;

  static Result<std::unique_ptr<Tokenizer>> FromGguf(const gguf::File& file);

  // add_special: prepend BOS when the model asks for it (tokenizer.ggml.add_bos_token) and
  //   append EOS when tokenizer.ggml.add_eos_token says so.
  // parse_special: text of control / user-defined tokens (e.g. "<｜User｜>") becomes that
  //   token; otherwise it is tokenized as plain text.
  std::vector<int32_t> Encode(std::string_view text, bool add_special, bool parse_special) const {
    return EncodeFragments(Partition(text, parse_special), add_special);
  }
  // Encode with parse_special, except inside the byte ranges `plain` of text (sorted, not
  // overlapping), where no special or user-defined token is recognised: chat message
  // contents, so that a user cannot write a turn marker such as "<｜Assistant｜>". Text that
  // contains no token text inside `plain` encodes exactly as Encode(text, add_special, true).
  std::vector<int32_t> EncodeWithPlainSpans(std::string_view text, bool add_special,
                                            const std::vector<TextSpan>& plain) const;

  // The bytes a token stands for (byte-level decoding applied, "▁" -> " ", <0xXX> -> byte).
  // Control tokens give their text only when `special` is true.
  // An invalid id gives "".
  std::string TokenToPiece(int32_t id, bool special = true) const;

  // Concatenated pieces; like llama.cpp, strips the leading space SentencePiece adds.
  // Lossless for byte-level BPE: Decode(Encode(s)) == s for valid UTF-8 s.
  std::string Decode(const std::vector<int32_t>& ids, bool special = true) const;
  // Exactly what llama.cpp's llama_detokenize returns: Decode plus, for vocabularies that
  // ask for it (GPT-2/Llama 3 style BPE, not Qwen2 or SentencePiece), the Hugging Face
  // clean_up_tokenization_spaces rules (" ?" -> "?", " 's" -> "'s", ...). Lossy.
  std::string DecodeLikeLlamaCpp(const std::vector<int32_t>& ids, bool special = true) const;

  int32_t n_vocab() const { return static_cast<int32_t>(tokens_.size()); }
  int32_t bos() const { return bos_; }  // -1 when none
  int32_t eos() const { return eos_; }
  int32_t eot() const { return eot_; }
  int32_t unk() const { return unk_; }  // -1 when none
  int32_t pad() const { return pad_; }  // -1 when none
  // SentencePiece: a space is put in front of text that starts the input or follows a
  // special token (tokenizer.ggml.add_space_prefix, default true for "llama").
  bool add_space_prefix() const { return add_space_prefix_; }
  const std::vector<int32_t>& eog_ids() const { return eog_ids_; }  // sorted
  bool add_bos() const { return add_bos_; }
  bool add_eos() const { return add_eos_; }
  bool IsEog(int32_t id) const;  // EOS, EOT, EOM and other end-of-generation tokens
  bool IsControl(int32_t id) const;
  TokenType Type(int32_t id) const;
  const std::string& Text(int32_t id) const { return tokens_[static_cast<size_t>(id)]; }
  std::optional<int32_t> Find(std::string_view token_text) const;
  const std::string& model() const { return model_; }
  const std::string& pre() const { return pre_; }

 protected:
  Tokenizer() = default;
  template <class T>
  friend Result<std::unique_ptr<Tokenizer>> tok::LoadTokenizer(const gguf::File& file);
  // What every vocabulary has (LoadCommon: tokens, types, special ids, the eog set), then
  // what the model's own algorithm needs (LoadModel: merge ranks, scores, pre-tokenizer).
  Status Load(const gguf::File& file);
  Status LoadCommon(const gguf::File& file);
  virtual Status LoadModel(const gguf::File& file) = 0;

  // A piece of input: either a special token (token >= 0) or raw text (token == -1).
  struct Fragment {
    int32_t token = -1;
    std::string_view text;
  };
  // Splits text on the texts of user-defined tokens (always) and control/unknown tokens
  // (when parse_special), longest token first, like llama.cpp's tokenizer_st_partition.
  std::vector<Fragment> Partition(std::string_view text, bool parse_special) const;
  // The fragments, in order, encoded (BOS/EOS added per add_special): special tokens as they
  // are, raw text through EncodeText.
  std::vector<int32_t> EncodeFragments(const std::vector<Fragment>& frags, bool add_special) const;
  // Appends the tokens of one fragment of raw text. after_special: the fragment starts the
  // input or follows a special token (SentencePiece puts its space prefix there).
  virtual void EncodeText(std::string_view text, bool after_special,
                          std::vector<int32_t>* out) const = 0;

  struct StringHash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
  };
  std::unordered_map<std::string, int32_t, StringHash, std::equal_to<>> token_to_id_;
  std::vector<int32_t> special_ids_;  // control/user-defined/unknown, longest text first
  std::vector<std::string> pieces_;   // TokenToPiece(id, /*special=*/true), filled by subclasses
  bool add_space_prefix_ = false;
  bool clean_spaces_ = false;  // llama.cpp's clean_spaces, used by DecodeLikeLlamaCpp

  std::string model_, pre_;
  std::vector<std::string> tokens_;
  std::vector<TokenType> types_;
  int32_t bos_ = -1, eos_ = -1, eot_ = -1, unk_ = -1, pad_ = -1;
  bool add_bos_ = false, add_eos_ = false;
  int32_t eom_ = -1;
  std::vector<int32_t> eog_ids_;
};

// Turns a stream of token ids into text without ever emitting half of a multi-byte UTF-8
// character: bytes of an incomplete character are held until the next token completes it.
class StreamDecoder {
 public:
  explicit StreamDecoder(const Tokenizer& tok, bool special = false)
      : tok_(tok), special_(special) {}
  std::string Push(int32_t id);  // text that became complete with this token
  std::string Flush();           // whatever is left (invalid trailing bytes become U+FFFD)

 private:
  const Tokenizer& tok_;
  bool special_;
  std::string pending_;
};

// Length of the longest prefix of s that is complete UTF-8 (incomplete tail excluded).
size_t CompleteUtf8Prefix(std::string_view s);

}  // namespace strata
