// strata tokenize / inspect / model synth.
#include <cstdio>
#include <memory>
#include <nlohmann/json.hpp>
#include <variant>

#include "cli/commands.h"
#include "gguf/gguf.h"
#include "model/config.h"
#include "model/synth.h"
#include "tokenizer/tokenizer.h"

namespace strata::cli {
namespace {

struct TokenizeArgs {
  std::string model, text;
  bool add_special = false, parse_special = false;
};

int Tokenize(const TokenizeArgs& a) {
  auto f = gguf::File::Open(a.model);
  if (!f.ok()) return Fail(f.status().message());
  auto tok = Tokenizer::FromGguf(*f.value());
  if (!tok.ok()) return Fail(tok.status().message());
  const std::vector<int32_t> ids = tok.value()->Encode(a.text, a.add_special, a.parse_special);
  std::printf("%s\n", nlohmann::json(ids).dump().c_str());
  return 0;
}

struct InspectArgs {
  std::string model;
  bool json = false;
  size_t max_elems = 8;
};

int Inspect(const InspectArgs& a) {
  auto fr = gguf::File::Open(a.model);
  if (!fr.ok()) return Fail(fr.status().message());
  const gguf::File& f = *fr.value();
  if (a.json) {
    nlohmann::json j;
    j["version"] = f.version();
    j["alignment"] = f.alignment();
    for (const auto& e : f.metadata())
      j["metadata"][std::string(e.key)] = gguf::ValueToString(e.value, a.max_elems);
    for (const auto& t : f.tensors())
      j["tensors"].push_back({{"name", std::string(t.name)},
                              {"type", DTypeName(t.type)},
                              {"dims", t.dims},
                              {"offset", t.offset},
                              {"bytes", t.nbytes}});
    std::printf("%s\n", j.dump(1, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
    return 0;
  }
  std::printf("GGUF v%u, %zu metadata entries, %zu tensors, alignment %llu, data at %llu\n",
              f.version(), f.metadata().size(), f.tensors().size(),
              static_cast<unsigned long long>(f.alignment()),
              static_cast<unsigned long long>(f.data_offset()));
  std::printf("\nmetadata:\n");
  for (const auto& e : f.metadata()) {
    std::string v = gguf::ValueToString(e.value, a.max_elems);
    if (v.size() > 200) v = v.substr(0, 200) + "...";
    std::printf("  %-45.*s %-6s %s\n", static_cast<int>(e.key.size()), e.key.data(),
                gguf::ValueTypeName(e.value.type), v.c_str());
  }
  auto cfg = ConfigFromGguf(f);
  if (cfg.ok()) {
    const ModelConfig& c = cfg.value();
    std::printf(
        "\nmodel: %s, %d layers, hidden %lld, ffn %lld, heads %d/%d (head dim %d), vocab %lld\n",
        c.arch_name.c_str(), c.n_layers, static_cast<long long>(c.hidden),
        static_cast<long long>(c.ffn), c.n_heads, c.n_kv_heads, c.head_dim,
        static_cast<long long>(c.n_vocab));
  }
  std::printf("\ntensors:\n");
  uint64_t total = 0;
  for (const auto& t : f.tensors()) {
    std::string dims;
    for (size_t i = 0; i < t.dims.size(); ++i) dims += (i ? ", " : "") + std::to_string(t.dims[i]);
    std::printf("  %-32.*s %-6s [%s] offset %llu, %llu bytes\n", static_cast<int>(t.name.size()),
                t.name.data(), DTypeName(t.type), dims.c_str(),
                static_cast<unsigned long long>(t.offset),
                static_cast<unsigned long long>(t.nbytes));
    total += t.nbytes;
  }
  std::printf("\n%zu tensors, %.2f MiB of tensor data\n", f.tensors().size(),
              static_cast<double>(total) / (1 << 20));
  return 0;
}

struct SynthArgs {
  std::string shape = "tiny-qwen2", out, type = "f32", vocab, tmpl, arch;
  uint64_t seed = 1;
  int threads = 0, layers = 0, heads = 0, kv_heads = 0;
  int64_t hidden = 0, ffn = 0;
  bool no_r1_tokens = false;
};

// An option of `model synth`: its flag, the field it fills and its help.
struct SynthOption {
  const char* flag;
  std::variant<std::string*, uint64_t*, int*, int64_t*> field;
  const char* help;
};

int Synth(const SynthArgs& a) {
  auto shape = NamedSynthShape(a.shape);
  if (!shape.ok()) return Fail(shape.status().message());
  SynthOptions o;
  o.shape = shape.value();
  // Custom overrides on top of the named shape.
  if (!a.arch.empty()) o.shape.arch = a.arch;
  if (a.layers) o.shape.n_layers = a.layers;
  if (a.hidden) o.shape.hidden = a.hidden;
  if (a.ffn) o.shape.ffn = a.ffn;
  if (a.heads) o.shape.n_heads = a.heads;
  if (a.kv_heads) o.shape.n_kv_heads = a.kv_heads;
  if (a.no_r1_tokens) o.shape.r1_tokens = false;
  auto t = ParseDType(a.type);
  if (!t.ok()) return Fail(t.status().message());
  o.type = t.value();
  o.seed = a.seed;
  o.threads = a.threads;
  o.vocab_path = a.vocab.empty() ? DefaultVocabFor(o.shape) : a.vocab;
  o.template_path = a.tmpl;
  Status st = SynthesizeModel(o, a.out);
  if (!st.ok()) return Fail(st.message());
  std::fprintf(stderr, "wrote %s (%s, %d layers, hidden %lld, %s)\n", a.out.c_str(),
               o.shape.arch.c_str(), o.shape.n_layers, static_cast<long long>(o.shape.hidden),
               DTypeName(o.type));
  return 0;
}

}  // namespace

Runner AddTokenizeCommand(CLI::App* sub) {
  auto a = std::make_shared<TokenizeArgs>();
  sub->add_option("--model,-m", a->model, "GGUF file (a vocabulary-only file works too)")
      ->required();
  sub->add_option("--text", a->text, "Text to tokenize")->required();
  sub->add_flag("--add-special", a->add_special, "Add BOS/EOS as the model asks");
  sub->add_flag("--parse-special", a->parse_special, "Turn special-token text into special tokens");
  return [a] { return Tokenize(*a); };
}

Runner AddInspectCommand(CLI::App* sub) {
  auto a = std::make_shared<InspectArgs>();
  sub->add_option("model", a->model, "GGUF file")->required();
  sub->add_flag("--json", a->json, "Print JSON");
  sub->add_option("--max-elems", a->max_elems, "Array elements shown")->capture_default_str();
  return [a] { return Inspect(*a); };
}

Runner AddModelCommand(CLI::App* model) {
  auto a = std::make_shared<SynthArgs>();
  model->require_subcommand(1);
  CLI::App* sub =
      model->add_subcommand("synth", "Write a GGUF with random weights of a real shape");
  sub->add_option(
      "--shape", a->shape,
      "r1-qwen-1.5b, r1-qwen-7b, r1-llama-8b, tiny-qwen2, tiny-llama (base for overrides)");
  sub->add_option("--out,-o", a->out, "Output GGUF path")->required();
  // Flag, field, help; in the order --help lists them.
  const SynthOption options[] = {
      {"--type", &a->type, "Weight type: f32, f16, bf16, q8_0"},
      {"--seed", &a->seed, "Seed"},
      {"--vocab", &a->vocab, "Vocabulary GGUF to copy the tokenizer from"},
      {"--template", &a->tmpl, "Jinja chat template file to embed"},
      {"--threads,-t", &a->threads, "Threads"},
      {"--arch", &a->arch, "Custom: architecture (qwen2, llama)"},
      {"--layers", &a->layers, "Custom: layers"},
      {"--hidden", &a->hidden, "Custom: hidden size"},
      {"--ffn", &a->ffn, "Custom: feed-forward size"},
      {"--heads", &a->heads, "Custom: attention heads"},
      {"--kv-heads", &a->kv_heads, "Custom: key/value heads"},
  };
  for (const SynthOption& o : options)
    std::visit([&](auto* field) { sub->add_option(o.flag, *field, o.help); }, o.field);
  sub->add_flag("--no-r1-tokens", a->no_r1_tokens, "Keep the vocabulary's own special tokens");
  return [a] { return Synth(*a); };
}

}  // namespace strata::cli
