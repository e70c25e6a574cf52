// libFuzzer target for the tokenizers. The first input byte picks the mode:
//   even: the rest is text, tokenized with the three test vocabularies (tests/data/vocab);
//         ids must be in range, byte-level BPE must decode valid UTF-8 back to the input,
//         and streaming decode must emit only valid UTF-8 that adds up to Decode's text;
//   odd:  the rest is a GGUF image; loading a tokenizer from it must succeed or fail with a
//         message, and a loaded tokenizer must survive encoding and decoding.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>
#include <string_view>

#include "gguf/gguf.h"
#include "tokenizer/pretokenize.h"
#include "tokenizer/tokenizer.h"

namespace {

using strata::StreamDecoder;
using strata::Tokenizer;

void Check(bool cond) {
  if (!cond) std::abort();
}

struct Vocab {
  std::shared_ptr<strata::gguf::File> file;
  std::unique_ptr<Tokenizer> tok;
};

Vocab LoadVocab(const char* name) {
  Vocab v;
  auto file = strata::gguf::File::Open(std::string(STRATA_TEST_DATA) + "/vocab/ggml-vocab-" + name +
                                       ".gguf");
  Check(file.ok());
  v.file = *file;
  auto tok = Tokenizer::FromGguf(*v.file);
  Check(tok.ok());
  v.tok = std::move(tok).value();
  return v;
}

void Exercise(const Tokenizer& tok, std::string_view text, bool byte_level) {
  const bool valid = strata::tok::IsValidUtf8(text);
  for (bool parse_special : {false, true}) {
    const auto ids = tok.Encode(text, /*add_special=*/parse_special, parse_special);
    for (int32_t id : ids) Check(id >= 0 && id < tok.n_vocab());
    const std::string decoded = tok.Decode(ids, /*special=*/true);
    if (!parse_special && byte_level && valid) Check(decoded == text);
    if (byte_level) Check(strata::tok::IsValidUtf8(decoded));

    StreamDecoder stream(tok, /*special=*/true);
    std::string streamed;
    for (int32_t id : ids) {
      const std::string piece = stream.Push(id);
      Check(strata::tok::IsValidUtf8(piece));
      streamed += piece;
    }
    streamed += stream.Flush();
    Check(strata::tok::IsValidUtf8(streamed));
    if (valid && (byte_level || !tok.add_space_prefix())) Check(streamed == decoded);
    (void)tok.DecodeLikeLlamaCpp(ids, false);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const uint8_t mode = data[0];
  const auto* rest = data + 1;
  const size_t n = size - 1;
  if ((mode & 1) == 0) {
    static const Vocab qwen2 = LoadVocab("qwen2");
    static const Vocab llama3 = LoadVocab("llama-bpe");
    static const Vocab spm = LoadVocab("llama-spm");
    const std::string_view text(reinterpret_cast<const char*>(rest), n);
    Exercise(*qwen2.tok, text, true);
    Exercise(*llama3.tok, text, true);
    Exercise(*spm.tok, text, false);
    return 0;
  }
  auto file = strata::gguf::File::Parse(rest, n);
  if (!file.ok()) return 0;
  auto tok = Tokenizer::FromGguf(**file);
  if (!tok.ok()) {
    Check(!tok.status().message().empty());
    return 0;
  }
  const Tokenizer& t = **tok;
  Check(t.n_vocab() > 0);
  const auto ids = t.Encode("Hello, world! 123 \xF0\x9F\xA6\x99 \xFF <s> <|im_end|>", true, true);
  for (int32_t id : ids) Check(id >= 0 && id < t.n_vocab());
  (void)t.Decode(ids);
  for (int32_t id = 0; id < t.n_vocab() && id < 512; ++id) (void)t.TokenToPiece(id, true);
  return 0;
}
