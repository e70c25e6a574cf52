// Private to the tokenizer module: constructors of the concrete tokenizers.
#pragma once

#include <memory>

#include "tokenizer/tokenizer.h"

namespace strata::tok {

// tokenizer.ggml.model == "gpt2": byte-level BPE over merge ranks (bpe.cc).
Result<std::unique_ptr<Tokenizer>> NewBpeTokenizer(const gguf::File& file);
// tokenizer.ggml.model == "llama": SentencePiece-style BPE over scores (spm.cc).
Result<std::unique_ptr<Tokenizer>> NewSpmTokenizer(const gguf::File& file);

}  // namespace strata::tok
