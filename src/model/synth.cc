#include "model/synth.h"

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <sstream>
#include <vector>

#include "base/progress.h"
#include "base/thread_pool.h"
#include "gguf/gguf.h"
#include "model/embedded_data.h"
#include "tensor/quant.h"

#ifndef STRATA_DATA_DIR
#define STRATA_DATA_DIR "tests/data"
#endif

namespace strata {
namespace {

uint64_t SplitMix(uint64_t& s) {
  uint64_t z = (s += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

uint64_t HashName(const std::string& s) {
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : s) h = (h ^ c) * 1099511628211ull;
  return h;
}

// How a tensor's values are drawn: uniform with the given mean and standard deviation.
struct Init {
  float mean;
  float std;
};

// Fills row r of a [rows, cols] tensor deterministically from (seed, name, r), so the result
// does not depend on the thread count.
void FillRow(uint64_t seed, uint64_t name_hash, int64_t r, const Init& init, float* out,
             int64_t cols) {
  uint64_t s = seed ^ name_hash ^ (static_cast<uint64_t>(r) * 0xD1B54A32D192ED03ull);
  const float a = init.std * std::sqrt(3.0f);  // U(-a, a) has standard deviation `std`
  for (int64_t c = 0; c < cols; ++c) {
    const float u = static_cast<float>(SplitMix(s) >> 40) * (1.0f / 16777216.0f);  // [0, 1)
    out[c] = init.mean + (2.0f * u - 1.0f) * a;
  }
}

std::string ReadFile(const std::string& path, Status* st) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    *st = Errorf("cannot read '%s'", path.c_str());
    return {};
  }
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

uint32_t FileType(DType t) {
  switch (t) {
    case DType::F32: return 0;
    case DType::F16: return 1;
    case DType::Q8_0: return 7;
    case DType::Q4_0: return 2;   // MOSTLY_Q4_0
    case DType::Q4_K: return 14;  // MOSTLY_Q4_K_S (every 2-D weight in Q4_K)
    case DType::Q5_K: return 16;  // MOSTLY_Q5_K_S
    case DType::Q6_K: return 18;  // MOSTLY_Q6_K
    case DType::BF16: return 32;
    default: return 0;
  }
}

// llama3 rope scaling, as the Llama 3.1 checkpoints define it: per-frequency divisors.
std::vector<float> Llama3RopeFactors(int head_dim, float base) {
  const double factor = 8.0, low = 1.0, high = 4.0, orig_ctx = 8192.0;
  const double low_wavelen = orig_ctx / low, high_wavelen = orig_ctx / high;
  std::vector<float> out;
  for (int i = 0; i < head_dim; i += 2) {
    const double freq =
        1.0 / std::pow(static_cast<double>(base), static_cast<double>(i) / head_dim);
    const double wavelen = 2.0 * M_PI / freq;
    double f;
    if (wavelen < high_wavelen) {
      f = 1.0;
    } else if (wavelen > low_wavelen) {
      f = factor;
    } else {
      const double smooth = (orig_ctx / wavelen - low) / (high - low);
      f = 1.0 / ((1.0 - smooth) / factor + smooth);
    }
    out.push_back(static_cast<float>(f));
  }
  return out;
}

// The R1 distills' special tokens: id in the Qwen2 and in the Llama 3 vocabulary (-1: not in
// it) and llama.cpp token type (3: control, 4: user-defined).
struct R1Token {
  const char* text;
  int64_t qwen2_id;
  int64_t llama_id;
  int32_t type;
};
constexpr R1Token kR1Tokens[] = {
    {"<｜begin▁of▁sentence｜>", 151646, 128000, 3},
    {"<｜end▁of▁sentence｜>", 151643, 128001, 3},
    {"<｜User｜>", 151644, 128011, 3},
    {"<｜Assistant｜>", 151645, 128012, 3},
    {"<|EOT|>", 151647, -1, 3},
    {"<think>", 151648, 128013, 4},
    {"</think>", 151649, 128014, 4},
};

}  // namespace

Result<SynthShape> NamedSynthShape(const std::string& name) {
  SynthShape s;
  if (name == "r1-qwen-1.5b") {
    s = {"qwen2", 28, 1536, 8960, 12, 2, 151936, 131072, 10000.0f, 1e-6f, false, false, true};
  } else if (name == "r1-qwen-7b") {
    s = {"qwen2", 28, 3584, 18944, 28, 4, 152064, 131072, 10000.0f, 1e-6f, false, false, true};
  } else if (name == "r1-llama-8b") {
    s = {"llama", 32, 4096, 14336, 32, 8, 128256, 131072, 500000.0f, 1e-5f, true, false, true};
  } else if (name == "tiny-qwen2") {
    s = {"qwen2", 4, 128, 320, 4, 2, 0, 131072, 10000.0f, 1e-6f, false, false, true};
  } else if (name == "tiny-llama") {
    s = {"llama", 4, 128, 320, 4, 2, 0, 131072, 500000.0f, 1e-5f, true, false, true};
  } else if (name == "demo") {
    s = {"qwen2", 8, 256, 768, 4, 2, 0, 131072, 10000.0f, 1e-6f, false, false, true};
  } else if (name == "tiny-qwen2-k") {  // row lengths multiples of 256, for the K-quants
    s = {"qwen2", 4, 256, 512, 4, 2, 0, 131072, 10000.0f, 1e-6f, false, false, true};
  } else if (name == "tiny-llama-k") {
    s = {"llama", 4, 256, 512, 4, 2, 0, 131072, 500000.0f, 1e-5f, true, false, true};
  } else {
    return Errorf(
        "unknown shape '%s' (known: r1-qwen-1.5b, r1-qwen-7b, r1-llama-8b, "
        "tiny-qwen2, tiny-llama, tiny-qwen2-k, tiny-llama-k, demo)",
        name.c_str());
  }
  return s;
}

std::string DefaultDataDir() {
  if (const char* env = std::getenv("STRATA_DATA_DIR")) return env;
  return STRATA_DATA_DIR;
}

std::string DefaultVocabFor(const SynthShape& shape) {
  std::string path = DefaultDataDir() + (shape.arch == "llama" ? "/vocab/ggml-vocab-llama-bpe.gguf"
                                                               : "/vocab/ggml-vocab-qwen2.gguf");
  if (shape.arch != "llama" && std::getenv("STRATA_DATA_DIR") == nullptr &&
      !std::ifstream(path, std::ios::binary))
    return "";  // an installed binary: the embedded copy
  return path;
}

SynthOptions DemoSynthOptions() {
  SynthOptions o;
  o.shape = NamedSynthShape("demo").value();
  o.type = DType::Q8_0;
  o.seed = 20260101;
  o.demo = true;
  return o;
}

std::string DefaultR1TemplatePath() {
  return DefaultDataDir() + "/templates/deepseek-ai-DeepSeek-R1-Distill-Llama-8B.jinja";
}

Status SynthesizeModel(const SynthOptions& o, const std::string& out_path) {
  const SynthShape& s = o.shape;
  if (s.arch != "qwen2" && s.arch != "llama")
    return Errorf("unsupported architecture '%s' (qwen2, llama)", s.arch.c_str());
  if (s.n_layers < 1 || s.hidden < 1 || s.ffn < 1 || s.n_heads < 1 || s.n_kv_heads < 1 ||
      s.n_heads % s.n_kv_heads != 0 || s.hidden % s.n_heads != 0 || (s.hidden / s.n_heads) % 2)
    return Status::Error("invalid shape: need heads | hidden, kv_heads | heads, even head dim");
  if (!Info(o.type).compute || !CanQuantize(o.type))
    return Errorf("cannot synthesize weights of type %s", DTypeName(o.type));
  const int64_t block = Info(o.type).block_size;
  const int64_t head_dim = s.hidden / s.n_heads;
  if (s.hidden % block || s.ffn % block || (s.n_heads * head_dim) % block)
    return Errorf("hidden (%lld) and ffn (%lld) must be multiples of the %s block size %lld",
                  static_cast<long long>(s.hidden), static_cast<long long>(s.ffn),
                  DTypeName(o.type), static_cast<long long>(block));

  const EmbeddedBlob embedded = EmbeddedQwen2Vocab();
  auto vocab_r = o.vocab_path.empty() ? gguf::File::Parse(embedded.data, embedded.size)
                                      : gguf::File::Open(o.vocab_path);
  if (!vocab_r.ok()) return vocab_r.status().With("vocabulary");
  std::shared_ptr<gguf::File> vocab = std::move(vocab_r).value();
  STRATA_ASSIGN_OR_RETURN(auto tokens_v, vocab->GetStringArray("tokenizer.ggml.tokens"));
  std::vector<std::string> tokens(tokens_v.begin(), tokens_v.end());
  std::vector<int32_t> types;
  if (vocab->Has("tokenizer.ggml.token_type")) {
    STRATA_ASSIGN_OR_RETURN(auto tt, vocab->GetIntArray("tokenizer.ggml.token_type"));
    for (int64_t t : tt) types.push_back(static_cast<int32_t>(t));
  }
  types.resize(tokens.size(), 1);
  const int64_t n_vocab = s.n_vocab > 0 ? s.n_vocab : static_cast<int64_t>(tokens.size());
  if (n_vocab < static_cast<int64_t>(tokens.size()))
    return Errorf("shape vocabulary %lld is smaller than the tokenizer's %zu tokens",
                  static_cast<long long>(n_vocab), tokens.size());
  for (int64_t i = static_cast<int64_t>(tokens.size()); i < n_vocab; ++i) {  // padding rows
    tokens.push_back("[PAD" + std::to_string(i) + "]");
    types.push_back(4);
  }
  STRATA_ASSIGN_OR_RETURN(auto tok_model, vocab->GetString("tokenizer.ggml.model"));

  gguf::Writer w;
  const std::string a = s.arch + ".";
  w.SetString("general.architecture", s.arch);
  w.SetString("general.name", o.demo ? std::string("strata-demo") : "strata-synth-" + s.arch);
  if (o.demo) w.SetBool(kDemoMetadataKey, true);
  w.SetUint32("general.file_type", FileType(o.type));
  if (Info(o.type).block_size > 1) w.SetUint32("general.quantization_version", 2);
  w.SetUint32(a + "block_count", static_cast<uint32_t>(s.n_layers));
  w.SetUint32(a + "context_length", static_cast<uint32_t>(s.n_ctx_train));
  w.SetUint32(a + "embedding_length", static_cast<uint32_t>(s.hidden));
  w.SetUint32(a + "feed_forward_length", static_cast<uint32_t>(s.ffn));
  w.SetUint32(a + "attention.head_count", static_cast<uint32_t>(s.n_heads));
  w.SetUint32(a + "attention.head_count_kv", static_cast<uint32_t>(s.n_kv_heads));
  w.SetFloat32(a + "rope.freq_base", s.rope_base);
  w.SetFloat32(a + "attention.layer_norm_rms_epsilon", s.rms_eps);
  if (s.arch == "llama") {
    w.SetUint32(a + "vocab_size", static_cast<uint32_t>(n_vocab));
    w.SetUint32(a + "rope.dimension_count", static_cast<uint32_t>(head_dim));
  }

  // Tokenizer: copied from the vocabulary file, then adjusted to the R1 distills' specials.
  for (const gguf::MetaEntry& e : vocab->metadata()) {
    if (e.key.rfind("tokenizer.", 0) == 0) w.CopyEntry(e);
  }
  if (s.r1_tokens && tok_model == "gpt2") {
    const bool qwen2 = s.arch == "qwen2";
    for (const R1Token& t : kR1Tokens) {
      const int64_t id = qwen2 ? t.qwen2_id : t.llama_id;
      if (id >= 0 && id < n_vocab) {
        tokens[static_cast<size_t>(id)] = t.text;
        types[static_cast<size_t>(id)] = t.type;
      }
    }
    if (qwen2) {
      w.SetString("tokenizer.ggml.pre", "deepseek-r1-qwen");
      w.SetUint32("tokenizer.ggml.bos_token_id", 151646);
      w.SetUint32("tokenizer.ggml.eos_token_id", 151643);
      w.SetUint32("tokenizer.ggml.padding_token_id", 151643);
    } else {
      w.SetUint32("tokenizer.ggml.bos_token_id", 128000);
      w.SetUint32("tokenizer.ggml.eos_token_id", 128001);
    }
    w.SetBool("tokenizer.ggml.add_bos_token", true);
    w.SetBool("tokenizer.ggml.add_eos_token", false);
    Status st;
    std::string tpl;
    if (!o.template_path.empty()) {
      tpl = ReadFile(o.template_path, &st);
    } else if (o.vocab_path.empty()) {  // the embedded vocabulary goes with the embedded template
      tpl = std::string(EmbeddedR1ChatTemplate());
    } else {  // the source tree's file, else (an installed binary) the embedded copy
      tpl = ReadFile(DefaultR1TemplatePath(), &st);
      if (!st.ok()) {
        st = Status::Ok();
        tpl = std::string(EmbeddedR1ChatTemplate());
      }
    }
    if (!st.ok()) return st.With("chat template");
    w.SetString("tokenizer.chat_template", tpl);
  } else if (!o.template_path.empty()) {
    Status st;
    std::string tpl = ReadFile(o.template_path, &st);
    if (!st.ok()) return st.With("chat template");
    w.SetString("tokenizer.chat_template", tpl);
  }
  w.SetStringArray("tokenizer.ggml.tokens", tokens);
  w.SetInt32Array("tokenizer.ggml.token_type", types);
  if (vocab->Has("tokenizer.ggml.scores")) {
    STRATA_ASSIGN_OR_RETURN(auto scores, vocab->GetFloatArray("tokenizer.ggml.scores"));
    scores.resize(static_cast<size_t>(n_vocab), 0.0f);
    w.SetFloat32Array("tokenizer.ggml.scores", scores);
  }

  // Tensors.
  auto pool = std::make_shared<ThreadPool>(o.threads);
  const uint64_t seed = o.seed;
  // Created before the tensors are filled (at w.Write); its total grows with each add().
  auto progress = std::make_shared<Progress>("synthesizing " + out_path, 0);
  uint64_t total_bytes = 0;
  auto add = [&](const std::string& name, int64_t cols, int64_t rows, DType type,
                 Init init) -> Status {
    std::vector<int64_t> dims = {cols};
    if (rows > 1 || type != DType::F32) dims.push_back(rows);
    const uint64_t h = HashName(name);
    const uint64_t row_bytes = RowBytesUnchecked(type, cols);
    total_bytes += row_bytes * static_cast<uint64_t>(rows);
    const bool show = o.progress;
    return w.AddTensor(name, dims, type, [=](uint8_t* dst, uint64_t) -> Status {
      pool->ParallelFor(rows, [&](int64_t b, int64_t e) {
        std::vector<float> tmp(static_cast<size_t>(cols));
        for (int64_t r = b; r < e; ++r) {
          FillRow(seed, h, r, init, tmp.data(), cols);
          QuantizeRow(type, tmp.data(), dst + static_cast<uint64_t>(r) * row_bytes, cols);
        }
        if (show) progress->Add(row_bytes * static_cast<uint64_t>(e - b));
      });
      return Status::Ok();
    });
  };
  auto add_const = [&](const std::string& name, std::vector<float> v) -> Status {
    std::vector<uint8_t> bytes(v.size() * 4);
    std::memcpy(bytes.data(), v.data(), bytes.size());
    return w.AddTensorData(name, {static_cast<int64_t>(v.size())}, DType::F32, std::move(bytes));
  };

  const int64_t H = s.hidden, QD = s.n_heads * head_dim, KVD = s.n_kv_heads * head_dim;
  const float inv_h = 1.0f / std::sqrt(static_cast<float>(H));
  STRATA_RETURN_IF_ERROR(add("token_embd.weight", H, n_vocab, o.type, {0.0f, 1.0f}));
  if (s.llama3_rope)
    STRATA_RETURN_IF_ERROR(
        add_const("rope_freqs.weight", Llama3RopeFactors(static_cast<int>(head_dim), s.rope_base)));
  for (int il = 0; il < s.n_layers; ++il) {
    const std::string p = "blk." + std::to_string(il) + ".";
    STRATA_RETURN_IF_ERROR(add(p + "attn_norm.weight", H, 1, DType::F32, {1.0f, 0.1f}));
    STRATA_RETURN_IF_ERROR(add(p + "attn_q.weight", H, QD, o.type, {0.0f, inv_h}));
    STRATA_RETURN_IF_ERROR(add(p + "attn_k.weight", H, KVD, o.type, {0.0f, inv_h}));
    STRATA_RETURN_IF_ERROR(add(p + "attn_v.weight", H, KVD, o.type, {0.0f, inv_h}));
    if (s.arch == "qwen2") {
      STRATA_RETURN_IF_ERROR(add(p + "attn_q.bias", QD, 1, DType::F32, {0.0f, 0.1f}));
      STRATA_RETURN_IF_ERROR(add(p + "attn_k.bias", KVD, 1, DType::F32, {0.0f, 0.1f}));
      STRATA_RETURN_IF_ERROR(add(p + "attn_v.bias", KVD, 1, DType::F32, {0.0f, 0.1f}));
    }
    STRATA_RETURN_IF_ERROR(add(p + "attn_output.weight", QD, H, o.type,
                               {0.0f, 1.0f / std::sqrt(static_cast<float>(QD))}));
    STRATA_RETURN_IF_ERROR(add(p + "ffn_norm.weight", H, 1, DType::F32, {1.0f, 0.1f}));
    STRATA_RETURN_IF_ERROR(add(p + "ffn_gate.weight", H, s.ffn, o.type, {0.0f, inv_h}));
    STRATA_RETURN_IF_ERROR(add(p + "ffn_up.weight", H, s.ffn, o.type, {0.0f, inv_h}));
    STRATA_RETURN_IF_ERROR(add(p + "ffn_down.weight", s.ffn, H, o.type,
                               {0.0f, 1.0f / std::sqrt(static_cast<float>(s.ffn))}));
  }
  STRATA_RETURN_IF_ERROR(add("output_norm.weight", H, 1, DType::F32, {1.0f, 0.1f}));
  if (!s.tied_output)  // head scaled up so that every layer moves the logits
    STRATA_RETURN_IF_ERROR(add("output.weight", H, n_vocab, o.type, {0.0f, 4.0f * inv_h}));
  progress->SetTotal(total_bytes);
  Status written = w.Write(out_path);
  if (o.progress) progress->Finish();
  return written;
}

}  // namespace strata
