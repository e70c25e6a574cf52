// Private to the tokenizer module: constructors of the concrete tokenizers.
#pragma once

#include <memory>

#include "tokenizer/tokenizer.h"

namespace strata::tok {

// A new T (a subclass of Tokenizer that overrides LoadModel), loaded from file.
template <class T>
Result<std::unique_ptr<Tokenizer>> LoadTokenizer(const gguf::File& file) {
  std::unique_ptr<Tokenizer> tok = std::make_unique<T>();
  STRATA_RETURN_IF_ERROR(tok->Load(file));
  return tok;
}

// tokenizer.ggml.model == "gpt2": byte-level BPE over merge ranks (bpe.cc).
Result<std::unique_ptr<Tokenizer>> NewBpeTokenizer(const gguf::File& file);
// tokenizer.ggml.model == "llama": SentencePiece-style BPE over scores (spm.cc).
Result<std::unique_ptr<Tokenizer>> NewSpmTokenizer(const gguf::File& file);

}  // namespace strata::tok
