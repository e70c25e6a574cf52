// Tokenizer: GGUF metadata loading shared by all models, special-token partitioning,
// decoding and streaming UTF-8 assembly.
#include "tokenizer/tokenizer.h"

#include <algorithm>
#include <limits>

#include "tokenizer/pretokenize.h"
#include "tokenizer/tokenizer_impl.h"

namespace strata {

namespace {

constexpr std::string_view kKeyModel = "tokenizer.ggml.model";
constexpr std::string_view kKeyPre = "tokenizer.ggml.pre";
constexpr std::string_view kKeyTokens = "tokenizer.ggml.tokens";
constexpr std::string_view kKeyTypes = "tokenizer.ggml.token_type";

// Token texts that end generation (llama.cpp's list, restricted to the families we serve and
// their close relatives). Listed in the order used to pick the EOT token when the file does
// not name one.
constexpr std::string_view kEogTexts[] = {
    "<|eot_id|>",      "<|im_end|>", "<|end|>", "<end_of_turn>",         "<|endoftext|>",
    "<|end_of_text|>", "<EOT>",      "_<EOT>",  "<｜end▁of▁sentence｜>", "<end_of_utterance>",
    "<|eom_id|>",      "</s>",
};
constexpr size_t kNumEotCandidates = 10;  // the first ten may serve as EOT; not EOM or </s>

// Fill-in-the-middle helper tokens that llama.cpp also treats as end of generation.
constexpr std::string_view kFimEogTexts[] = {
    "<|fim_pad|>",   "<fim-pad>",  "<fim_pad>", "<PAD>",      "[PAD]",        "<|fim_repo|>",
    "<|repo_name|>", "<fim-repo>", "<REPO>",    "<reponame>", "<|file_sep|>",
};

TokenType TypeFromInt(int64_t v) {
  if (v >= 0 && v <= 6) return static_cast<TokenType>(v);
  return TokenType::kUndefined;
}

// Appends s with invalid UTF-8 replaced by U+FFFD (one per maximal invalid subpart; an
// incomplete tail also becomes one U+FFFD).
void AppendReplacingInvalid(std::string_view s, std::string* out) {
  size_t i = 0;
  while (i < s.size()) {
    const int r = tok::Utf8Check(s, i);
    if (r > 0) {
      out->append(s.substr(i, static_cast<size_t>(r)));
      i += static_cast<size_t>(r);
    } else {
      out->append("\xEF\xBF\xBD");
      if (r == 0) break;
      i += static_cast<size_t>(-r);
    }
  }
}

}  // namespace

Result<std::unique_ptr<Tokenizer>> Tokenizer::FromGguf(const gguf::File& file) {
  if (!file.Has(kKeyModel)) {
    return Status::Error("tokenizer: missing metadata key tokenizer.ggml.model");
  }
  auto model = file.GetString(kKeyModel);
  if (!model.ok()) return model.status().With("tokenizer");
  Result<std::unique_ptr<Tokenizer>> tok = Status::Error("unreachable");
  if (*model == "gpt2") {
    tok = tok::NewBpeTokenizer(file);
  } else if (*model == "llama") {
    tok = tok::NewSpmTokenizer(file);
  } else {
    return Errorf("tokenizer: unsupported tokenizer.ggml.model '%s' (supported: gpt2, llama)",
                  std::string(*model).c_str());
  }
  if (!tok.ok()) return tok.status().With("tokenizer");
  return tok;
}

Status Tokenizer::Load(const gguf::File& file) {
  STRATA_RETURN_IF_ERROR(LoadCommon(file));
  return LoadModel(file);
}

Status Tokenizer::LoadCommon(const gguf::File& file) {
  STRATA_ASSIGN_OR_RETURN(std::string_view model, file.GetString(kKeyModel));
  model_ = std::string(model);
  if (file.Has(kKeyPre)) {
    STRATA_ASSIGN_OR_RETURN(std::string_view pre, file.GetString(kKeyPre));
    pre_ = std::string(pre);
  }

  // ---- tokens ----
  const gguf::MetaEntry* toks = file.Find(kKeyTokens);
  if (!toks) return Status::Error("missing metadata key tokenizer.ggml.tokens");
  if (toks->value.type != gguf::ValueType::kArray ||
      toks->value.elem_type != gguf::ValueType::kString) {
    return Status::Error("tokenizer.ggml.tokens must be an array of strings");
  }
  const auto& texts = toks->value.str_elems;
  if (texts.empty()) return Status::Error("tokenizer.ggml.tokens is empty");
  if (texts.size() > static_cast<size_t>(std::numeric_limits<int32_t>::max())) {
    return Status::Error("tokenizer.ggml.tokens has too many entries");
  }
  const size_t n = texts.size();
  tokens_.clear();
  tokens_.reserve(n);
  token_to_id_.clear();
  token_to_id_.reserve(n);
  for (size_t i = 0; i < n; ++i) {
    std::string text(texts[i]);
    if (text.empty()) text = "[EMPTY_" + std::to_string(i) + "]";  // as llama.cpp does
    auto [it, inserted] = token_to_id_.emplace(text, static_cast<int32_t>(i));
    if (!inserted) {
      return Errorf("tokenizer.ggml.tokens: duplicate token text '%s' (ids %d and %zu)",
                    text.c_str(), it->second, i);
    }
    tokens_.push_back(std::move(text));
  }

  // ---- token types ----
  types_.assign(n, TokenType::kNormal);
  if (file.Has(kKeyTypes)) {
    STRATA_ASSIGN_OR_RETURN(std::vector<int64_t> types, file.GetIntArray(kKeyTypes));
    if (types.size() != n) {
      return Errorf("tokenizer.ggml.token_type has %zu entries but there are %zu tokens",
                    types.size(), n);
    }
    for (size_t i = 0; i < n; ++i) types_[i] = TypeFromInt(types[i]);
  }

  // ---- defaults per model (llama.cpp's), then the file's settings ----
  const bool is_spm = model_ == "llama";
  bool llama3_family = false;
  if (!is_spm) {
    auto pre = tok::PreTypeFromName(pre_);
    llama3_family = pre.ok() && *pre == tok::PreType::kLlama3;
  }
  bos_ = is_spm ? 1 : -1;
  eos_ = is_spm ? 2 : -1;
  unk_ = is_spm ? 0 : -1;
  eot_ = eom_ = pad_ = -1;
  add_bos_ = is_spm || llama3_family;
  add_eos_ = false;
  add_space_prefix_ = is_spm;
  if (!is_spm) {
    auto pre = tok::PreTypeFromName(pre_);
    clean_spaces_ = !(pre.ok() && *pre == tok::PreType::kQwen2);
  }
  for (int32_t* id : {&bos_, &eos_, &unk_}) {
    if (*id >= static_cast<int32_t>(n)) *id = -1;
  }

  struct IdKey {
    const char* key;
    int32_t* id;
  };
  const IdKey id_keys[] = {
      {"tokenizer.ggml.bos_token_id", &bos_},     {"tokenizer.ggml.eos_token_id", &eos_},
      {"tokenizer.ggml.eot_token_id", &eot_},     {"tokenizer.ggml.eom_token_id", &eom_},
      {"tokenizer.ggml.unknown_token_id", &unk_}, {"tokenizer.ggml.padding_token_id", &pad_},
  };
  for (const IdKey& k : id_keys) {
    if (!file.Has(k.key)) continue;
    STRATA_ASSIGN_OR_RETURN(int64_t v, file.GetInt(k.key));
    if (v < 0 || v >= static_cast<int64_t>(n)) {
      return Errorf("%s = %lld is out of range (vocabulary has %zu tokens)", k.key,
                    static_cast<long long>(v), n);
    }
    *k.id = static_cast<int32_t>(v);
  }
  struct BoolKey {
    const char* key;
    bool* value;
  };
  const BoolKey bool_keys[] = {
      {"tokenizer.ggml.add_bos_token", &add_bos_},
      {"tokenizer.ggml.add_eos_token", &add_eos_},
      {"tokenizer.ggml.add_space_prefix", &add_space_prefix_},
  };
  for (const BoolKey& k : bool_keys) {
    if (!file.Has(k.key)) continue;
    STRATA_ASSIGN_OR_RETURN(bool v, file.GetBool(k.key));
    *k.value = v;
  }
  if (add_bos_ && bos_ < 0) {
    return Status::Error("the tokenizer adds a BOS token but tokenizer.ggml.bos_token_id is unset");
  }
  if (add_eos_ && eos_ < 0) {
    return Status::Error(
        "the tokenizer adds an EOS token but tokenizer.ggml.eos_token_id is unset");
  }

  // ---- end-of-generation set ----
  auto find = [&](std::string_view t) -> int32_t {
    auto it = token_to_id_.find(t);
    return it == token_to_id_.end() ? -1 : it->second;
  };
  if (eot_ < 0) {
    for (size_t k = 0; k < kNumEotCandidates && eot_ < 0; ++k) eot_ = find(kEogTexts[k]);
  }
  if (eom_ < 0) eom_ = find("<|eom_id|>");
  std::vector<int32_t> eog;
  for (std::string_view t : kEogTexts) {
    const int32_t id = find(t);
    if (id < 0) continue;
    eog.push_back(id);
    // llama.cpp: an end-of-generation token is always a control token.
    if (types_[static_cast<size_t>(id)] != TokenType::kControl) {
      types_[static_cast<size_t>(id)] = TokenType::kControl;
    }
  }
  for (std::string_view t : kFimEogTexts) {
    const int32_t id = find(t);
    if (id >= 0) eog.push_back(id);
  }
  for (int32_t id : {eos_, eot_, eom_}) {
    if (id >= 0) eog.push_back(id);
  }
  std::sort(eog.begin(), eog.end());
  eog.erase(std::unique(eog.begin(), eog.end()), eog.end());
  eog_ids_ = std::move(eog);

  // ---- special tokens matched in raw text, longest first ----
  special_ids_.clear();
  for (size_t i = 0; i < n; ++i) {
    const TokenType t = types_[i];
    if (t == TokenType::kControl || t == TokenType::kUserDefined || t == TokenType::kUnknown) {
      special_ids_.push_back(static_cast<int32_t>(i));
    }
  }
  std::stable_sort(special_ids_.begin(), special_ids_.end(), [&](int32_t a, int32_t b) {
    return tokens_[static_cast<size_t>(a)].size() > tokens_[static_cast<size_t>(b)].size();
  });
  return Status::Ok();
}

std::vector<Tokenizer::Fragment> Tokenizer::Partition(std::string_view text,
                                                      bool parse_special) const {
  std::vector<Fragment> frags;
  if (text.empty()) return frags;
  frags.push_back(Fragment{-1, text});
  std::vector<Fragment> next;
  for (int32_t id : special_ids_) {
    const TokenType type = types_[static_cast<size_t>(id)];
    if (!parse_special && type != TokenType::kUserDefined) continue;
    const std::string& st = tokens_[static_cast<size_t>(id)];
    // Fragments are substrings of text: a token absent from text is absent from all.
    if (text.find(st) == std::string_view::npos) continue;
    next.clear();
    for (const Fragment& f : frags) {
      if (f.token >= 0) {
        next.push_back(f);
        continue;
      }
      std::string_view rest = f.text;
      for (;;) {
        const size_t pos = rest.find(st);
        if (pos == std::string_view::npos) break;
        if (pos > 0) next.push_back(Fragment{-1, rest.substr(0, pos)});
        next.push_back(Fragment{id, std::string_view(st)});
        rest.remove_prefix(pos + st.size());
      }
      if (!rest.empty()) next.push_back(Fragment{-1, rest});
    }
    frags.swap(next);
  }
  return frags;
}

std::vector<int32_t> Tokenizer::EncodeWithPlainSpans(std::string_view text, bool add_special,
                                                     const std::vector<TextSpan>& plain) const {
  std::vector<Fragment> frags;
  // Raw text is kept as views into `text`: adjacent raw pieces are joined again, so that the
  // pre-tokenizer sees the same words as for the whole text.
  auto add_raw = [&](std::string_view piece) {
    if (piece.empty()) return;
    if (!frags.empty() && frags.back().token < 0 &&
        frags.back().text.data() + frags.back().text.size() == piece.data()) {
      frags.back().text =
          std::string_view(frags.back().text.data(), frags.back().text.size() + piece.size());
      return;
    }
    frags.push_back(Fragment{-1, piece});
  };
  auto add_template = [&](std::string_view piece) {
    for (const Fragment& f : Partition(piece, /*parse_special=*/true)) {
      if (f.token >= 0) frags.push_back(f);
      else add_raw(f.text);
    }
  };
  size_t pos = 0;
  for (const TextSpan& span : plain) {
    const size_t b = std::min(std::max(span.begin, pos), text.size());
    const size_t e = std::min(std::max(span.end, b), text.size());
    add_template(text.substr(pos, b - pos));
    add_raw(text.substr(b, e - b));
    pos = e;
  }
  add_template(text.substr(pos));
  return EncodeFragments(frags, add_special);
}

std::vector<int32_t> Tokenizer::EncodeFragments(const std::vector<Fragment>& frags,
                                                bool add_special) const {
  std::vector<int32_t> out;
  size_t bytes = 0;
  for (const Fragment& f : frags) bytes += f.text.size();
  out.reserve(bytes / 3 + 4);
  if (add_special && add_bos_) out.push_back(bos_);
  bool after_special = true;  // the start of the input counts as following a special token
  for (const Fragment& f : frags) {
    if (f.token >= 0) {
      out.push_back(f.token);
      after_special = true;
    } else {
      EncodeText(f.text, after_special, &out);
      after_special = false;
    }
  }
  if (add_special && add_eos_) out.push_back(eos_);
  return out;
}

std::string Tokenizer::TokenToPiece(int32_t id, bool special) const {
  if (id < 0 || id >= n_vocab() || static_cast<size_t>(id) >= pieces_.size()) return {};
  const TokenType t = types_[static_cast<size_t>(id)];
  if (!special && (t == TokenType::kControl || t == TokenType::kUnknown)) return {};
  return pieces_[static_cast<size_t>(id)];
}

std::string Tokenizer::Decode(const std::vector<int32_t>& ids, bool special) const {
  std::string out;
  for (size_t i = 0; i < ids.size(); ++i) {
    std::string piece = TokenToPiece(ids[i], special);
    // llama.cpp strips one leading space from the first token's piece when the model
    // prefixes text with a space (SentencePiece).
    if (i == 0 && add_space_prefix_ && !piece.empty() && piece[0] == ' ') piece.erase(0, 1);
    out += piece;
  }
  return out;
}

namespace {

// Hugging Face's clean_up_tokenization_spaces as llama.cpp applies it, in three passes.
std::string CleanSpaces(std::string t) {
  if (t.empty()) return t;
  // 1: drop a space in front of ? ! . ,
  std::string a(1, t[0]);
  for (size_t i = 1; i < t.size(); ++i) {
    const char x = t[i];
    if (t[i - 1] == ' ' && (x == '?' || x == '!' || x == '.' || x == ',')) a.pop_back();
    a.push_back(x);
  }
  // 2: " ' " -> "'" (the apostrophe keeps neither space; the next character then counts as
  // following a non-space)
  std::string b(1, a[0]);
  char prev = a[0];
  for (size_t i = 1; i < a.size(); ++i) {
    const char x = a[i];
    if (x == '\'' && i + 1 < a.size() && prev == ' ' && a[i + 1] == ' ') {
      b.pop_back();
      b.push_back(x);
      ++i;          // skip the following space
      prev = '\0';  // it no longer counts as a space before the next character
      continue;
    }
    b.push_back(x);
    prev = x;
  }
  // 3: drop the space in front of 's 'm 're 've
  std::string c(1, b[0]);
  for (size_t i = 1; i < b.size(); ++i) {
    const char x = b[i];
    if (b[i - 1] == ' ' && x == '\'' && i + 1 < b.size()) {
      const char x1 = b[i + 1];
      const char x2 = i + 2 < b.size() ? b[i + 2] : '\0';
      if (x1 == 's' || x1 == 'm' || ((x1 == 'r' || x1 == 'v') && x2 == 'e')) c.pop_back();
    }
    c.push_back(x);
  }
  return c;
}

}  // namespace

std::string Tokenizer::DecodeLikeLlamaCpp(const std::vector<int32_t>& ids, bool special) const {
  std::string out = Decode(ids, special);
  return clean_spaces_ ? CleanSpaces(std::move(out)) : out;
}

bool Tokenizer::IsEog(int32_t id) const {
  return id >= 0 && std::binary_search(eog_ids_.begin(), eog_ids_.end(), id);
}

bool Tokenizer::IsControl(int32_t id) const { return Type(id) == TokenType::kControl; }

TokenType Tokenizer::Type(int32_t id) const {
  if (id < 0 || id >= n_vocab()) return TokenType::kUndefined;
  return types_[static_cast<size_t>(id)];
}

std::optional<int32_t> Tokenizer::Find(std::string_view token_text) const {
  auto it = token_to_id_.find(token_text);
  if (it == token_to_id_.end()) return std::nullopt;
  return it->second;
}

// ---- streaming ----

size_t CompleteUtf8Prefix(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    const int r = tok::Utf8Check(s, i);
    if (r == 0) return i;  // a character cut short by the end of s
    i += static_cast<size_t>(r > 0 ? r : -r);
  }
  return s.size();
}

std::string StreamDecoder::Push(int32_t id) {
  pending_ += tok_.TokenToPiece(id, special_);
  const size_t n = CompleteUtf8Prefix(pending_);
  std::string out;
  AppendReplacingInvalid(std::string_view(pending_).substr(0, n), &out);
  pending_.erase(0, n);
  return out;
}

std::string StreamDecoder::Flush() {
  std::string out;
  AppendReplacingInvalid(pending_, &out);
  pending_.clear();
  return out;
}

}  // namespace strata
