// strata quantize: placeholder, being implemented.
#include "cli/commands.h"

namespace strata::cli {

Runner AddQuantizeCommand(CLI::App& app) {
  app.add_subcommand("quantize", "Quantize a GGUF model (F32/F16/BF16 -> Q8_0, Q4_0, Q4_K_M, Q5_K_M, Q6_K)");
  return [] { return Fail("strata quantize: not implemented yet"); };
}

}  // namespace strata::cli
