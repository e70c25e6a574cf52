// strata quantize IN OUT TYPE [--threads N]: F32/F16/BF16 GGUF -> Q8_0, Q4_0, Q4_K_M, Q5_K_M or
// Q6_K with llama-quantize's per-tensor type mix (see docs/quantize.md).
#include <unistd.h>

#include <cstdio>
#include <map>
#include <memory>
#include <string>

#include "cli/commands.h"
#include "gguf/gguf.h"
#include "quant/quantize.h"

namespace strata::cli {
namespace {

struct QuantizeArgs {
  std::string in, out, type;
  int threads = 0;
  bool quiet = false;
};

int Quantize(const QuantizeArgs& a) {
  auto ft = ParseQuantFileType(a.type);
  if (!ft.ok()) return Fail(ft.status().message());
  if (a.in == a.out) return Fail("the output file must differ from the input file");
  QuantizeOptions opts;
  opts.threads = a.threads;
  // On a terminal a progress bar (rate, ETA); elsewhere the per-tensor lines.
  if (!a.quiet && isatty(STDERR_FILENO) == 1) opts.progress = true;
  else if (!a.quiet)
    opts.log = [](const std::string& line) { std::fprintf(stderr, "%s\n", line.c_str()); };
  auto st = QuantizeModel(a.in, a.out, ft.value(), opts);
  if (!st.ok()) return Fail(st.status().message());
  const QuantizeStats& s = st.value();

  // Type mix of the written file, read back.
  auto f = gguf::File::Open(a.out);
  if (!f.ok()) return Fail("reading back '" + a.out + "': " + f.status().message());
  std::map<std::string, std::pair<int, uint64_t>> mix;
  for (const auto& t : f.value()->tensors()) {
    auto& m = mix[DTypeName(t.type)];
    ++m.first;
    m.second += t.nbytes;
  }
  const double mib = 1024.0 * 1024.0;
  std::printf("%s -> %s (%s): %d tensors, %d quantized", a.in.c_str(), a.out.c_str(),
              QuantFileTypeName(ft.value()), s.n_tensors, s.n_quantized);
  if (s.n_fallback > 0) std::printf(", %d by row-length fallback", s.n_fallback);
  std::printf(
      "\n  size %.2f MiB (%.2f bits/weight) -> %.2f MiB (%.2f bits/weight) in %.1f s\n",
      static_cast<double>(s.bytes_in) / mib,
      s.n_elements ? 8.0 * static_cast<double>(s.bytes_in) / static_cast<double>(s.n_elements)
                   : 0.0,
      static_cast<double>(s.bytes_out) / mib,
      s.n_elements ? 8.0 * static_cast<double>(s.bytes_out) / static_cast<double>(s.n_elements)
                   : 0.0,
      s.seconds);
  for (const auto& [name, m] : mix)
    std::printf("  %-5s %4d tensors %10.2f MiB\n", name.c_str(), m.first,
                static_cast<double>(m.second) / mib);
  return 0;
}

}  // namespace

Runner AddQuantizeCommand(CLI::App* cmd) {
  auto args = std::make_shared<QuantizeArgs>();
  cmd->add_option("input", args->in, "input GGUF (F32/F16/BF16 weights)")->required();
  cmd->add_option("output", args->out, "output GGUF")->required();
  cmd->add_option("type", args->type, "Q8_0, Q4_0, Q4_K_M, Q5_K_M or Q6_K (case-insensitive)")
      ->required();
  cmd->add_option("--threads,-t", args->threads, "threads (0: all cores)")->capture_default_str();
  cmd->add_flag("--quiet,-q", args->quiet, "no per-tensor progress lines");
  return [args] { return Quantize(*args); };
}

}  // namespace strata::cli
