// Private to the tokenizer module: UTF-8 helpers, the GPT-2 byte <-> unicode mapping and the
// regex pre-tokenizers (PCRE2, UTF + UCP) that split text into words before BPE.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"

namespace strata::tok {

// ---- UTF-8 ----

// Appends the UTF-8 encoding of a code point (must be <= 0x10FFFF, not a surrogate).
void AppendUtf8(uint32_t cp, std::string* out);

// Decodes the UTF-8 sequence at s[pos] by its lead byte and continuation bytes only (overlong
// forms, surrogates and values above U+10FFFF pass): returns its length, 0 when it is
// malformed or truncated (or pos is past the end).
size_t DecodeUtf8At(std::string_view s, size_t pos, uint32_t* cp);

// Re-encodes text the way llama.cpp reads it before pre-tokenization: a lead byte announces
// the sequence length and only continuation bytes are checked; anything that does not decode
// becomes U+FFFD (one per offending byte). Surrogates and code points above U+10FFFF also
// become U+FFFD so the result is always valid UTF-8 (PCRE2 requires it).
std::string SanitizeUtf8(std::string_view text);

// Length of the (possibly truncated) UTF-8 sequence announced by a lead byte, as llama.cpp
// counts it: 1 for ASCII and stray continuation bytes, 2/3/4 by the high bits.
inline size_t Utf8SeqLen(unsigned char lead) {
  static constexpr uint8_t kLen[16] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4};
  return kLen[lead >> 4];
}

// Strict UTF-8 check at s[pos]: returns the length (>0) of a valid character, 0 when the
// bytes from pos to the end are a proper prefix of a valid character (incomplete), or
// -n when the n bytes at pos are an invalid maximal subpart (replace with one U+FFFD).
int Utf8Check(std::string_view s, size_t pos);

// Strict UTF-8 validity of a whole string.
bool IsValidUtf8(std::string_view s);

// ---- GPT-2 byte-level encoding ----

// The printable code point GPT-2 assigns to each byte, as UTF-8 (e.g. ' ' -> "Ġ").
const std::string& ByteToUnicode(uint8_t byte);
// Inverse mapping: code point -> byte, or -1 when the code point is not part of the table.
int UnicodeToByte(uint32_t cp);
// Byte-level encodes raw bytes ("a b" -> "aĠb").
std::string ByteEncode(std::string_view bytes);

// ---- Pre-tokenizer ----

enum class PreType { kDefault, kGpt2, kLlama3, kQwen2 };

// Maps tokenizer.ggml.pre to a pre-tokenizer; error for names we do not implement.
Result<PreType> PreTypeFromName(std::string_view name);

// A sequence of regexes applied one after another, each splitting the pieces left by the
// previous one (text between matches is kept as its own piece), as llama.cpp does.
class PreTokenizer {
 public:
  ~PreTokenizer();
  static Result<std::unique_ptr<PreTokenizer>> Create(PreType type);
  // Splits valid UTF-8 text (see SanitizeUtf8) into words; views point into `text`.
  std::vector<std::string_view> Split(std::string_view text) const;

 private:
  PreTokenizer() = default;
  struct Regex;
  std::vector<std::unique_ptr<Regex>> regexes_;
};

}  // namespace strata::tok
