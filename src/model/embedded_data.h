// Data compiled into the binary so that an installed `strata` (without the source tree) can
// synthesize models: the Qwen2 byte-level BPE vocabulary GGUF and the DeepSeek-R1 chat
// template of tests/data (embedded at build time with the assembler's .incbin).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace strata {

struct EmbeddedBlob {
  const uint8_t* data;
  size_t size;
};

EmbeddedBlob EmbeddedQwen2Vocab();          // tests/data/vocab/ggml-vocab-qwen2.gguf
std::string_view EmbeddedR1ChatTemplate();  // tests/data/templates/...R1-Distill-Llama-8B.jinja

}  // namespace strata
