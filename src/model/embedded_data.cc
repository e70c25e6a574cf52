#include "model/embedded_data.h"

#ifndef STRATA_DATA_DIR
#error "STRATA_DATA_DIR must name tests/data (set by src/model/CMakeLists.txt)"
#endif

// The files are copied into .rodata by the assembler; the symbols bound their bytes.
__asm__(
    ".pushsection .rodata\n"
    ".balign 64\n"
    "strata_embedded_qwen2_vocab_begin:\n"
    ".incbin \"" STRATA_DATA_DIR
    "/vocab/ggml-vocab-qwen2.gguf\"\n"
    "strata_embedded_qwen2_vocab_end:\n"
    ".balign 8\n"
    "strata_embedded_r1_template_begin:\n"
    ".incbin \"" STRATA_DATA_DIR
    "/templates/deepseek-ai-DeepSeek-R1-Distill-Llama-8B.jinja\"\n"
    "strata_embedded_r1_template_end:\n"
    ".popsection\n");

extern "C" {
extern const uint8_t strata_embedded_qwen2_vocab_begin[] __asm__(
    "strata_embedded_qwen2_vocab_begin");
extern const uint8_t strata_embedded_qwen2_vocab_end[] __asm__("strata_embedded_qwen2_vocab_end");
extern const char strata_embedded_r1_template_begin[] __asm__("strata_embedded_r1_template_begin");
extern const char strata_embedded_r1_template_end[] __asm__("strata_embedded_r1_template_end");
}

namespace strata {

EmbeddedBlob EmbeddedQwen2Vocab() {
  return {strata_embedded_qwen2_vocab_begin,
          static_cast<size_t>(strata_embedded_qwen2_vocab_end - strata_embedded_qwen2_vocab_begin)};
}

std::string_view EmbeddedR1ChatTemplate() {
  return {strata_embedded_r1_template_begin,
          static_cast<size_t>(strata_embedded_r1_template_end - strata_embedded_r1_template_begin)};
}

}  // namespace strata
