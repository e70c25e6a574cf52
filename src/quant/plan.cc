// Per-tensor type choice of `strata quantize`: llama.cpp's llama-quantize rules (no importance
// matrix, no overrides) for the file types Strata produces, on dense qwen2 / llama models.
//
// The facts this follows (llama.cpp src/llama-quant.cpp):
//  - Only tensors with >= 2 dims whose name ends in "weight" are quantized, except norms and a
//    few small tables (positional / token-type embeddings, MoE routers, ...).
//  - The output head (and the token embedding when the model ties it to the head, i.e. has no
//    output.weight) becomes Q6_K, or stays Q8_0 for Q8_0 files, or becomes Q8_0 when its row
//    length is not a multiple of the default type's block.
//  - Q4_K_M / Q5_K_M: attn_v and ffn_down of the layers where use_more_bits(i, n) holds get
//    Q6_K; on 70B-class models (80 layers) attn_v that would be Q4_K gets Q5_K.
//  - A row length that is not a multiple of the chosen type's block falls back:
//    Q4_K -> Q5_0, Q5_K -> Q5_1, Q6_K -> Q8_0, and F16 when even 32 does not divide it.
//  - Tensors are processed (and written) sorted by layer index (global tensors first), then by
//    name; the attn_v / ffn_down layer counters advance in that order.
#include <algorithm>
#include <cctype>
#include <cstdio>

#include "quant/quantize.h"

namespace strata {
namespace {

enum class Category {
  kTokenEmbd,
  kAttnQ,
  kAttnK,
  kAttnV,
  kAttnQkv,
  kAttnKvB,
  kAttnOutput,
  kFfnUp,
  kFfnGate,
  kFfnDown,
  kOutput,
  kOther,
};

bool Contains(const std::string& s, const char* part) { return s.find(part) != std::string::npos; }

Category Categorize(const std::string& name) {
  if (name == "output.weight") return Category::kOutput;
  if (name == "token_embd.weight" || name == "per_layer_token_embd.weight")
    return Category::kTokenEmbd;
  if (Contains(name, "attn_qkv.weight")) return Category::kAttnQkv;
  if (Contains(name, "attn_kv_b.weight")) return Category::kAttnKvB;
  if (Contains(name, "attn_v.weight")) return Category::kAttnV;
  if (Contains(name, "attn_k.weight")) return Category::kAttnK;
  if (Contains(name, "attn_q.weight")) return Category::kAttnQ;
  if (Contains(name, "attn_output.weight")) return Category::kAttnOutput;
  if (Contains(name, "ffn_up")) return Category::kFfnUp;
  if (Contains(name, "ffn_gate")) return Category::kFfnGate;
  if (Contains(name, "ffn_down")) return Category::kFfnDown;
  return Category::kOther;
}

bool IsAttnVLike(Category c) {
  return c == Category::kAttnV || c == Category::kAttnQkv || c == Category::kAttnKvB;
}

// Layer index of "blk.<i>.*", else -1.
int LayerOf(const std::string& name) {
  int layer = -1;
  if (std::sscanf(name.c_str(), "blk.%d.", &layer) != 1) return -1;
  return layer;
}

// The layers of a _M mix that get more bits: the first and last eighth, and every third
// layer in between.
bool UseMoreBits(int i_layer, int n_layers) {
  return i_layer < n_layers / 8 || i_layer >= 7 * n_layers / 8 || (i_layer - n_layers / 8) % 3 == 2;
}

bool IsFloatType(DType t) { return t == DType::F32 || t == DType::F16 || t == DType::BF16; }

int64_t BlockOf(DType t) { return Info(t).block_size; }

struct Counters {
  int n_attn_v = 0, i_attn_v = 0;
  int n_ffn_down = 0, i_ffn_down = 0;
  bool tied_embeddings = true;
  bool model_70b = false;
};

// The rule-based choice, before the shape fallback.
DType ChooseType(const QuantTensorDesc& t, Category cat, QuantFileType ftype, Counters& c) {
  DType type = DefaultTensorType(ftype);
  const bool m_mix = ftype == QuantFileType::kQ4_K_M || ftype == QuantFileType::kQ5_K_M;
  if (cat == Category::kOutput || (c.tied_embeddings && cat == Category::kTokenEmbd)) {
    if (t.dims[0] % BlockOf(type) != 0) return DType::Q8_0;
    return type == DType::Q8_0 ? DType::Q8_0 : DType::Q6_K;
  }
  if (cat == Category::kTokenEmbd) return type;  // untied: the default type
  if (IsAttnVLike(cat)) {
    if (m_mix && UseMoreBits(c.i_attn_v, c.n_attn_v)) type = DType::Q6_K;
    if (c.model_70b && (type == DType::Q3_K || type == DType::Q4_K)) type = DType::Q5_K;
    ++c.i_attn_v;
    return type;
  }
  if (cat == Category::kFfnDown) {
    if (m_mix && UseMoreBits(c.i_ffn_down, c.n_ffn_down)) type = DType::Q6_K;
    ++c.i_ffn_down;
    return type;
  }
  return type;
}

}  // namespace

const char* QuantFileTypeName(QuantFileType t) {
  switch (t) {
#define STRATA_NAME_CASE(name, value, text, tensor_type) \
  case QuantFileType::name: return text;
    STRATA_QUANT_FILE_TYPES(STRATA_NAME_CASE)
#undef STRATA_NAME_CASE
  }
  return "?";
}

Result<QuantFileType> ParseQuantFileType(const std::string& name) {
  std::string up = name;
  std::transform(up.begin(), up.end(), up.begin(),
                 [](unsigned char ch) { return static_cast<char>(std::toupper(ch)); });
  static constexpr QuantFileType kAll[] = {
#define STRATA_ENUMERATOR(name, value, text, tensor_type) QuantFileType::name,
      STRATA_QUANT_FILE_TYPES(STRATA_ENUMERATOR)
#undef STRATA_ENUMERATOR
  };
  for (QuantFileType t : kAll)
    if (up == QuantFileTypeName(t)) return t;
  return Errorf("unknown quantization type '%s' (supported: Q8_0, Q4_0, Q4_K_M, Q5_K_M, Q6_K)",
                name.c_str());
}

DType DefaultTensorType(QuantFileType t) {
  switch (t) {
#define STRATA_DEFAULT_CASE(name, value, text, tensor_type) \
  case QuantFileType::name: return DType::tensor_type;
    STRATA_QUANT_FILE_TYPES(STRATA_DEFAULT_CASE)
#undef STRATA_DEFAULT_CASE
  }
  return DType::Q8_0;
}

bool TensorAllowsQuantization(const std::string& name, int n_dims) {
  if (n_dims < 2) return false;
  const std::string suffix = "weight";
  if (name.size() < suffix.size() ||
      name.compare(name.size() - suffix.size(), suffix.size(), suffix) != 0)
    return false;
  static const char* const kNever[] = {
      "_norm.weight",
      "ffn_gate_inp.weight",
      "ffn_gate_tid2eid.weight",
      "altup",
      "laurel",
      "per_layer_model_proj",
      "ssm_conv1d",
      "shortconv.conv.weight",
      "indexer.k_proj.weight",
      "indexer.q_proj.weight",
      "time_mix_first.weight",
      "time_mix_w0.weight",
      "time_mix_w1.weight",
      "time_mix_w2.weight",
      "time_mix_v0.weight",
      "time_mix_v1.weight",
      "time_mix_v2.weight",
      "time_mix_a0.weight",
      "time_mix_a1.weight",
      "time_mix_a2.weight",
      "time_mix_g1.weight",
      "time_mix_g2.weight",
      "time_mix_decay_w1.weight",
      "time_mix_decay_w2.weight",
      "time_mix_lerp_fused.weight",
      "attn_rel_b.weight",
      ".position_embd",
      "sam.pos_embd",
      "sam.neck.",
      "sam.net_",
      ".rel_pos",
      ".patch_embd",
      ".patch_merger",
      "a.rvq.codebook",
      "mm.a.code_embd",
  };
  for (const char* part : kNever)
    if (Contains(name, part)) return false;
  // Positional and token-type embeddings (BERT-style models).
  if (name == "position_embd.weight" || name == "token_types.weight") return false;
  return true;
}

Result<std::vector<QuantTensorPlan>> PlanQuantization(const std::vector<QuantTensorDesc>& tensors,
                                                      const QuantModelInfo& model,
                                                      QuantFileType ftype) {
  if (model.n_layers <= 0) return Status::Error("model has no layers (block_count missing?)");
  std::vector<const QuantTensorDesc*> order;
  order.reserve(tensors.size());
  for (const QuantTensorDesc& t : tensors) {
    if (t.dims.empty()) return Errorf("tensor '%s' has no dimensions", t.name.c_str());
    const DTypeInfo& info = Info(t.type);
    if (!IsFloatType(t.type)) {
      if (info.block_size > 1)
        return Errorf(
            "the input is already quantized (tensor '%s' is %s); strata quantize needs "
            "F32, F16 or BF16 weights",
            t.name.c_str(), info.name);
      if (TensorAllowsQuantization(t.name, static_cast<int>(t.dims.size())))
        return Errorf("tensor '%s' has type %s, which cannot be quantized", t.name.c_str(),
                      info.name);
    }
    order.push_back(&t);
  }
  // llama.cpp's order: by layer (-1 for global tensors), then by name.
  std::sort(order.begin(), order.end(), [](const QuantTensorDesc* a, const QuantTensorDesc* b) {
    const int la = LayerOf(a->name), lb = LayerOf(b->name);
    if (la != lb) return la < lb;
    return a->name < b->name;
  });

  Counters c;
  for (const QuantTensorDesc* t : order) {
    const Category cat = Categorize(t->name);
    if (IsAttnVLike(cat)) ++c.n_attn_v;
    if (cat == Category::kOutput) c.tied_embeddings = false;
  }
  c.n_ffn_down = model.n_layers;
  c.model_70b =
      model.n_layers == 80 &&
      (model.arch == "qwen2" || (model.arch == "llama" && model.n_heads != model.n_kv_heads));

  std::vector<QuantTensorPlan> plan;
  plan.reserve(order.size());
  for (const QuantTensorDesc* t : order) {
    QuantTensorPlan p{t->name, t->dims, t->type, t->type, false};
    if (TensorAllowsQuantization(t->name, static_cast<int>(t->dims.size()))) {
      DType to = ChooseType(*t, Categorize(t->name), ftype, c);
      const int64_t ncols = t->dims[0];
      if (ncols % BlockOf(to) != 0) {
        p.fallback = true;
        DType fb = to;
        switch (to) {
          case DType::Q4_K: fb = DType::Q5_0; break;
          case DType::Q5_K: fb = DType::Q5_1; break;
          case DType::Q6_K: fb = DType::Q8_0; break;
          default: break;  // a 32-block type: only F16 is left
        }
        if (ncols % BlockOf(fb) != 0) fb = DType::F16;
        if (!Info(fb).compute)
          return Errorf(
              "tensor '%s': its row length %lld is not a multiple of %lld, so %s would "
              "fall back to %s as llama.cpp does, a type Strata cannot run; use Q8_0, "
              "Q4_0 or Q6_K for this model",
              t->name.c_str(), static_cast<long long>(ncols), static_cast<long long>(BlockOf(to)),
              DTypeName(to), DTypeName(fb));
        to = fb;
      }
      p.to = to;
    }
    plan.push_back(std::move(p));
  }
  return plan;
}

}  // namespace strata
