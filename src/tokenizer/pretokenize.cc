// UTF-8 helpers, GPT-2 byte mapping and PCRE2-based pre-tokenizers.
#define PCRE2_CODE_UNIT_WIDTH 8
#include "tokenizer/pretokenize.h"

#include <pcre2.h>

#include <array>

namespace strata::tok {

// ---------------------------------------------------------------------------------------
// UTF-8

size_t DecodeUtf8At(std::string_view s, size_t pos, uint32_t* cp) {
  if (pos >= s.size()) return 0;
  const auto b0 = static_cast<unsigned char>(s[pos]);
  size_t len = 0;
  uint32_t v = 0;
  if (b0 < 0x80) {
    *cp = b0;
    return 1;
  } else if ((b0 & 0xE0) == 0xC0) {
    len = 2;
    v = b0 & 0x1F;
  } else if ((b0 & 0xF0) == 0xE0) {
    len = 3;
    v = b0 & 0x0F;
  } else if ((b0 & 0xF8) == 0xF0) {
    len = 4;
    v = b0 & 0x07;
  } else {
    return 0;
  }
  if (pos + len > s.size()) return 0;
  for (size_t k = 1; k < len; ++k) {
    const auto b = static_cast<unsigned char>(s[pos + k]);
    if ((b & 0xC0) != 0x80) return 0;
    v = (v << 6) | (b & 0x3F);
  }
  *cp = v;
  return len;
}

void AppendUtf8(uint32_t cp, std::string* out) {
  if (cp < 0x80) {
    out->push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out->push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out->push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out->push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

std::string SanitizeUtf8(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  const auto* s = reinterpret_cast<const unsigned char*>(text.data());
  const size_t n = text.size();
  size_t i = 0;
  auto cont = [&](size_t k) { return k < n && (s[k] & 0xC0) == 0x80; };
  while (i < n) {
    const unsigned char c = s[i];
    if (c < 0x80) {
      out.push_back(static_cast<char>(c));
      ++i;
      continue;
    }
    uint32_t cp = 0;
    size_t len = 0;
    if ((c & 0x40) == 0) {
      len = 0;  // stray continuation byte
    } else if ((c & 0x20) == 0) {
      if (cont(i + 1)) {
        cp = ((c & 0x1Fu) << 6) | (s[i + 1] & 0x3Fu);
        len = 2;
      }
    } else if ((c & 0x10) == 0) {
      if (cont(i + 1) && cont(i + 2)) {
        cp = ((c & 0x0Fu) << 12) | ((s[i + 1] & 0x3Fu) << 6) | (s[i + 2] & 0x3Fu);
        len = 3;
      }
    } else if ((c & 0x08) == 0) {
      if (cont(i + 1) && cont(i + 2) && cont(i + 3)) {
        cp = ((c & 0x07u) << 18) | ((s[i + 1] & 0x3Fu) << 12) | ((s[i + 2] & 0x3Fu) << 6) |
             (s[i + 3] & 0x3Fu);
        len = 4;
      }
    }
    if (len == 0 || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) {
      AppendUtf8(0xFFFD, &out);
      i += (len == 0 ? 1 : len);
      continue;
    }
    AppendUtf8(cp, &out);  // also normalizes overlong forms, like llama.cpp
    i += len;
  }
  return out;
}

int Utf8Check(std::string_view str, size_t pos) {
  const auto* s = reinterpret_cast<const unsigned char*>(str.data());
  const size_t n = str.size();
  const unsigned char c = s[pos];
  if (c < 0x80) return 1;
  size_t need;
  unsigned char lo = 0x80, hi = 0xBF;  // allowed range of the second byte
  if (c >= 0xC2 && c <= 0xDF) {
    need = 2;
  } else if (c >= 0xE0 && c <= 0xEF) {
    need = 3;
    if (c == 0xE0) lo = 0xA0;
    if (c == 0xED) hi = 0x9F;
  } else if (c >= 0xF0 && c <= 0xF4) {
    need = 4;
    if (c == 0xF0) lo = 0x90;
    if (c == 0xF4) hi = 0x8F;
  } else {
    return -1;
  }
  for (size_t k = 1; k < need; ++k) {
    if (pos + k >= n) return 0;  // valid so far, truncated
    const unsigned char b = s[pos + k];
    const bool ok = (k == 1) ? (b >= lo && b <= hi) : (b >= 0x80 && b <= 0xBF);
    if (!ok) return -static_cast<int>(k);
  }
  return static_cast<int>(need);
}

bool IsValidUtf8(std::string_view s) {
  for (size_t i = 0; i < s.size();) {
    const int r = Utf8Check(s, i);
    if (r <= 0) return false;
    i += static_cast<size_t>(r);
  }
  return true;
}

// ---------------------------------------------------------------------------------------
// GPT-2 byte <-> unicode: printable Latin-1 bytes ('!'..'~', '¡'..'¬', '®'..'ÿ') map to
// themselves, the remaining bytes to U+0100, U+0101, ... in increasing byte order.

namespace {

struct ByteTables {
  std::array<std::string, 256> to_utf8;
  std::array<int16_t, 512> from_cp;  // every mapped code point is < 0x144
  ByteTables() {
    from_cp.fill(-1);
    uint32_t next = 256;
    for (int b = 0; b < 256; ++b) {
      const bool printable = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE;
      const uint32_t cp = printable ? static_cast<uint32_t>(b) : next++;
      AppendUtf8(cp, &to_utf8[static_cast<size_t>(b)]);
      from_cp[cp] = static_cast<int16_t>(b);
    }
  }
};

const ByteTables& Tables() {
  static const ByteTables t;
  return t;
}

}  // namespace

const std::string& ByteToUnicode(uint8_t byte) { return Tables().to_utf8[byte]; }

int UnicodeToByte(uint32_t cp) { return cp < 512 ? Tables().from_cp[cp] : -1; }

std::string ByteEncode(std::string_view bytes) {
  const ByteTables& t = Tables();
  std::string out;
  out.reserve(bytes.size() * 2);
  for (char c : bytes) out += t.to_utf8[static_cast<uint8_t>(c)];
  return out;
}

// ---------------------------------------------------------------------------------------
// Regexes (the split rules llama.cpp uses per tokenizer.ggml.pre).
//
// \s is spelled out as llama.cpp's whitespace set: PCRE2 10.42's UCP \s lacks U+0085.

namespace {

#define WS   \
  "\\t-\\r " \
  "\\x{85}\\x{a0}\\x{1680}\\x{2000}-\\x{200a}\\x{2028}\\x{2029}\\x{202f}\\x{205f}\\x{3000}"
#define S_ "[" WS "]"
#define NOT_S "[^" WS "]"
#define CONTRACTIONS_CI "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])"

// Llama 3: case-insensitive contractions, letters with one optional leading non-letter,
// numbers in groups of up to three, punctuation runs, newlines, whitespace.
constexpr const char* kLlama3[] = {
    CONTRACTIONS_CI "|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^" WS
                    "\\p{L}\\p{N}]+[\\r\\n]*|" S_ "*[\\r\\n]+|" S_ "+(?!" NOT_S ")|" S_ "+",
};
// Qwen2: as Llama 3 but every digit is its own word.
constexpr const char* kQwen2[] = {
    CONTRACTIONS_CI "|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^" WS "\\p{L}\\p{N}]+[\\r\\n]*|" S_
                    "*[\\r\\n]+|" S_ "+(?!" NOT_S ")|" S_ "+",
};
#define GPT2_RE                                                                                   \
  "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^" WS "\\p{L}\\p{N}]+|" S_ "+(?!" NOT_S ")|" S_ \
  "+"
constexpr const char* kGpt2[] = {GPT2_RE};
constexpr const char* kDefault[] = {
    "[\\p{P}\\$\\+<=>\\^~\\|]+",
    GPT2_RE,
    "\\p{N}+",
    "[0-9][0-9][0-9]",
};

#undef GPT2_RE
#undef CONTRACTIONS_CI
#undef NOT_S
#undef S_
#undef WS

}  // namespace

Result<PreType> PreTypeFromName(std::string_view name) {
  if (name.empty() || name == "default") return PreType::kDefault;
  if (name == "gpt2" || name == "gpt-2") return PreType::kGpt2;
  if (name == "llama3" || name == "llama-v3" || name == "llama-bpe" || name == "falcon3" ||
      name == "pixtral") {
    return PreType::kLlama3;
  }
  if (name == "qwen2" || name == "deepseek-r1-qwen") return PreType::kQwen2;
  return Errorf(
      "unsupported pre-tokenizer type tokenizer.ggml.pre = '%s' (supported: default, "
      "gpt2, llama-bpe/llama3, qwen2/deepseek-r1-qwen)",
      std::string(name).c_str());
}

struct PreTokenizer::Regex {
  pcre2_code* code = nullptr;
  ~Regex() {
    if (code) pcre2_code_free(code);
  }
};

PreTokenizer::~PreTokenizer() = default;

Result<std::unique_ptr<PreTokenizer>> PreTokenizer::Create(PreType type) {
  std::vector<const char*> patterns;
  switch (type) {
    case PreType::kLlama3: patterns.assign(std::begin(kLlama3), std::end(kLlama3)); break;
    case PreType::kQwen2: patterns.assign(std::begin(kQwen2), std::end(kQwen2)); break;
    case PreType::kGpt2: patterns.assign(std::begin(kGpt2), std::end(kGpt2)); break;
    case PreType::kDefault: patterns.assign(std::begin(kDefault), std::end(kDefault)); break;
  }
  std::unique_ptr<PreTokenizer> pt(new PreTokenizer());
  for (const char* pattern : patterns) {
    auto re = std::make_unique<Regex>();
    int err = 0;
    PCRE2_SIZE err_off = 0;
    re->code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern), PCRE2_ZERO_TERMINATED,
                             PCRE2_UTF | PCRE2_UCP, &err, &err_off, nullptr);
    if (!re->code) {
      PCRE2_UCHAR msg[256];
      pcre2_get_error_message(err, msg, sizeof(msg));
      return Errorf("pre-tokenizer regex does not compile at offset %zu: %s", err_off,
                    reinterpret_cast<const char*>(msg));
    }
    pcre2_jit_compile(re->code, PCRE2_JIT_COMPLETE);  // optional speed-up; falls back if absent
    pt->regexes_.push_back(std::move(re));
  }
  return pt;
}

std::vector<std::string_view> PreTokenizer::Split(std::string_view text) const {
  std::vector<std::string_view> pieces;
  if (text.empty()) return pieces;
  pieces.push_back(text);
  std::vector<std::string_view> next;
  for (const auto& re : regexes_) {
    pcre2_match_data* md = pcre2_match_data_create_from_pattern(re->code, nullptr);
    if (!md) return pieces;  // out of memory: leave the text unsplit
    next.clear();
    next.reserve(pieces.size() * 2 + 8);
    for (std::string_view seg : pieces) {
      const auto* subject = reinterpret_cast<PCRE2_SPTR>(seg.data());
      size_t pos = 0;   // search start
      size_t done = 0;  // end of the last emitted piece
      while (pos < seg.size()) {
        const int rc =
            pcre2_match(re->code, subject, seg.size(), pos, PCRE2_NO_UTF_CHECK, md, nullptr);
        if (rc < 0) break;  // no further match (or a matching error: keep the rest whole)
        const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md);
        size_t b = ov[0], e = ov[1];
        if (e <= b) {  // empty match: step over one character
          pos = b + Utf8SeqLen(static_cast<unsigned char>(seg[b]));
          continue;
        }
        if (b > done) next.push_back(seg.substr(done, b - done));
        next.push_back(seg.substr(b, e - b));
        done = pos = e;
      }
      if (done < seg.size()) next.push_back(seg.substr(done));
    }
    pcre2_match_data_free(md);
    pieces.swap(next);
  }
  return pieces;
}

}  // namespace strata::tok
