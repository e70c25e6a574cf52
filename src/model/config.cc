#include "model/config.h"

namespace strata {

Result<ModelConfig> ConfigFromGguf(const gguf::File& f) {
  ModelConfig c;
  STRATA_ASSIGN_OR_RETURN(std::string_view arch, f.GetString("general.architecture"));
  c.arch_name = std::string(arch);
  if (arch == "llama") {
    c.arch = Arch::kLlama;
  } else if (arch == "qwen2") {
    c.arch = Arch::kQwen2;
    c.rope_neox = true;
    c.qkv_bias = true;
  } else {
    return Errorf("unsupported architecture '%s' (supported: llama, qwen2)", c.arch_name.c_str());
  }
  if (f.Has("general.name")) {
    auto n = f.GetString("general.name");
    if (n.ok()) c.name = std::string(n.value());
  }
  const std::string p = c.arch_name + ".";
  auto geti = [&](const char* key, int64_t lo, int64_t hi, int64_t* out) -> Status {
    auto v = f.GetUint(p + key);
    if (!v.ok()) return v.status();
    if (static_cast<int64_t>(v.value()) < lo || static_cast<int64_t>(v.value()) > hi ||
        v.value() > static_cast<uint64_t>(hi))
      return Errorf("%s%s = %llu is out of range [%lld, %lld]", p.c_str(), key,
                    static_cast<unsigned long long>(v.value()), static_cast<long long>(lo),
                    static_cast<long long>(hi));
    *out = static_cast<int64_t>(v.value());
    return Status::Ok();
  };
  int64_t n_layers, heads, kv_heads;
  STRATA_RETURN_IF_ERROR(geti("block_count", 1, 4096, &n_layers));
  STRATA_RETURN_IF_ERROR(geti("embedding_length", 1, 1 << 20, &c.hidden));
  STRATA_RETURN_IF_ERROR(geti("feed_forward_length", 1, 1 << 22, &c.ffn));
  STRATA_RETURN_IF_ERROR(geti("attention.head_count", 1, 4096, &heads));
  kv_heads = heads;
  if (f.Has(p + "attention.head_count_kv"))
    STRATA_RETURN_IF_ERROR(geti("attention.head_count_kv", 1, 4096, &kv_heads));
  c.n_layers = static_cast<int>(n_layers);
  c.n_heads = static_cast<int>(heads);
  c.n_kv_heads = static_cast<int>(kv_heads);
  if (c.n_heads % c.n_kv_heads != 0)
    return Errorf("head_count %d is not a multiple of head_count_kv %d", c.n_heads, c.n_kv_heads);
  if (c.hidden % c.n_heads != 0 && !f.Has(p + "attention.key_length"))
    return Errorf("embedding_length %lld is not a multiple of head_count %d",
                  static_cast<long long>(c.hidden), c.n_heads);
  int64_t hd = c.hidden / c.n_heads;
  if (f.Has(p + "attention.key_length")) {
    STRATA_RETURN_IF_ERROR(geti("attention.key_length", 2, 1024, &hd));
    int64_t vl = hd;
    if (f.Has(p + "attention.value_length"))
      STRATA_RETURN_IF_ERROR(geti("attention.value_length", 2, 1024, &vl));
    if (vl != hd) return Status::Error("attention.value_length != key_length is not supported");
  }
  if (hd % 2 != 0) return Errorf("head dimension %lld must be even", static_cast<long long>(hd));
  c.head_dim = static_cast<int>(hd);
  if (f.Has(p + "rope.dimension_count")) {
    int64_t rd;
    STRATA_RETURN_IF_ERROR(geti("rope.dimension_count", 2, 1024, &rd));
    if (rd != hd)
      return Errorf(
          "partial rotary embeddings (rope.dimension_count %lld < head dim %lld) are "
          "not supported",
          static_cast<long long>(rd), static_cast<long long>(hd));
  }
  c.n_ctx_train = 4096;
  if (f.Has(p + "context_length"))
    STRATA_RETURN_IF_ERROR(geti("context_length", 1, 1ll << 24, &c.n_ctx_train));

  STRATA_ASSIGN_OR_RETURN(double eps, f.GetFloatOr(p + "attention.layer_norm_rms_epsilon", 1e-5));
  if (!(eps > 0 && eps < 1)) return Errorf("rms epsilon %g is out of range", eps);
  c.rms_eps = static_cast<float>(eps);
  STRATA_ASSIGN_OR_RETURN(double base, f.GetFloatOr(p + "rope.freq_base", 10000.0));
  if (!(base > 1)) return Errorf("rope.freq_base %g is out of range", base);
  c.rope_base = static_cast<float>(base);

  if (f.Has(p + "rope.scaling.type")) {
    STRATA_ASSIGN_OR_RETURN(std::string_view st, f.GetString(p + "rope.scaling.type"));
    if (st == "linear") {
      STRATA_ASSIGN_OR_RETURN(double factor, f.GetFloatOr(p + "rope.scaling.factor", 1.0));
      if (!(factor >= 1)) return Errorf("rope.scaling.factor %g is out of range", factor);
      c.rope_freq_scale = static_cast<float>(1.0 / factor);
    } else if (st != "none") {
      return Errorf(
          "rope scaling type '%.*s' is not supported (supported: none, linear; "
          "llama3 scaling comes from the rope_freqs tensor)",
          static_cast<int>(st.size()), st.data());
    }
  }

  // Vocabulary size: explicit key, else the tokenizer's token list.
  if (f.Has(p + "vocab_size")) {
    STRATA_RETURN_IF_ERROR(geti("vocab_size", 1, 1 << 24, &c.n_vocab));
  } else if (const gguf::MetaEntry* e = f.Find("tokenizer.ggml.tokens")) {
    c.n_vocab = static_cast<int64_t>(e->value.n_elems);
  } else if (const gguf::TensorInfo* t = f.FindTensor("token_embd.weight")) {
    c.n_vocab = t->dims.size() > 1 ? t->dims[1] : 0;
  }
  if (c.n_vocab <= 0) return Status::Error("cannot determine the vocabulary size");
  return c;
}

}  // namespace strata
