// strata quantize: llama-quantize's per-tensor type choices, quantization error bounds, and an
// end-to-end quantize of a synthesized model.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <map>
#include <set>

#include "gguf/gguf.h"
#include "model/testing/tiny_model.h"
#include "model/weights.h"
#include "quant/quantize.h"
#include "tensor/quant.h"

namespace strata {
namespace {

// ---- models as tensor lists -----------------------------------------------------------------

struct Shape {
  std::string arch;
  int layers;
  int64_t hidden, ffn, kv_dim, vocab;
  bool tied;
};

// Real r1 distills (GGUF tensor names, dims[0] = row length), 2-D weights in F16.
const Shape kQwen15{"qwen2", 28, 1536, 8960, 256, 151936, false};  // DeepSeek-R1-Distill-Qwen-1.5B
const Shape kLlama8{"llama", 32, 4096, 14336, 1024, 128256, false};  // DeepSeek-R1-Distill-Llama-8B

std::vector<QuantTensorDesc> Tensors(const Shape& s, DType type = DType::F16) {
  std::vector<QuantTensorDesc> t;
  t.push_back({"token_embd.weight", {s.hidden, s.vocab}, type});
  for (int i = 0; i < s.layers; ++i) {
    const std::string b = "blk." + std::to_string(i) + ".";
    t.push_back({b + "attn_norm.weight", {s.hidden}, DType::F32});
    t.push_back({b + "attn_q.weight", {s.hidden, s.hidden}, type});
    t.push_back({b + "attn_k.weight", {s.hidden, s.kv_dim}, type});
    t.push_back({b + "attn_v.weight", {s.hidden, s.kv_dim}, type});
    if (s.arch == "qwen2") {
      t.push_back({b + "attn_q.bias", {s.hidden}, DType::F32});
      t.push_back({b + "attn_k.bias", {s.kv_dim}, DType::F32});
      t.push_back({b + "attn_v.bias", {s.kv_dim}, DType::F32});
    }
    t.push_back({b + "attn_output.weight", {s.hidden, s.hidden}, type});
    t.push_back({b + "ffn_norm.weight", {s.hidden}, DType::F32});
    t.push_back({b + "ffn_gate.weight", {s.hidden, s.ffn}, type});
    t.push_back({b + "ffn_up.weight", {s.hidden, s.ffn}, type});
    t.push_back({b + "ffn_down.weight", {s.ffn, s.hidden}, type});
  }
  t.push_back({"output_norm.weight", {s.hidden}, DType::F32});
  if (!s.tied) t.push_back({"output.weight", {s.hidden, s.vocab}, type});
  if (s.arch == "llama") t.push_back({"rope_freqs.weight", {s.hidden / 64}, DType::F32});
  return t;
}

QuantModelInfo InfoOf(const Shape& s) {
  return {s.arch, s.layers, 32, static_cast<int>(32 * s.kv_dim / s.hidden)};
}

std::map<std::string, DType> PlanMap(const Shape& s, QuantFileType ft, DType in = DType::F16) {
  auto plan = PlanQuantization(Tensors(s, in), InfoOf(s), ft);
  EXPECT_TRUE(plan.ok()) << plan.status().message();
  std::map<std::string, DType> m;
  if (plan.ok())
    for (const QuantTensorPlan& p : plan.value()) m[p.name] = p.to;
  return m;
}

// The layers of a _M mix that get Q6_K attn_v / ffn_down, as llama.cpp's use_more_bits
// selects them (first eighth, last eighth, every third layer in between), written out.
const std::set<int> kMoreBits28 = {0, 1, 2, 5, 8, 11, 14, 17, 20, 23, 24, 25, 26, 27};
const std::set<int> kMoreBits32 = {0, 1, 2, 3, 6, 9, 12, 15, 18, 21, 24, 27, 28, 29, 30, 31};

void ExpectMix(const Shape& s, QuantFileType ft, const std::set<int>& more_bits) {
  const auto m = PlanMap(s, ft);
  const DType base = DefaultTensorType(ft);
  const bool mix = ft == QuantFileType::kQ4_K_M || ft == QuantFileType::kQ5_K_M;
  const DType head = ft == QuantFileType::kQ8_0 ? DType::Q8_0 : DType::Q6_K;
  SCOPED_TRACE(std::string(QuantFileTypeName(ft)) + " " + s.arch);
  EXPECT_EQ(m.at("output.weight"), head);
  EXPECT_EQ(m.at("token_embd.weight"), base);  // untied: the default type
  EXPECT_EQ(m.at("output_norm.weight"), DType::F32);
  if (s.arch == "llama") {
    EXPECT_EQ(m.at("rope_freqs.weight"), DType::F32);
  }
  int n_more = 0;
  for (int i = 0; i < s.layers; ++i) {
    const std::string b = "blk." + std::to_string(i) + ".";
    const bool more = mix && more_bits.count(i);
    n_more += more;
    EXPECT_EQ(m.at(b + "attn_v.weight"), more ? DType::Q6_K : base) << i;
    EXPECT_EQ(m.at(b + "ffn_down.weight"), more ? DType::Q6_K : base) << i;
    for (const char* n : {"attn_q.weight", "attn_k.weight", "attn_output.weight", "ffn_gate.weight",
                          "ffn_up.weight"})
      EXPECT_EQ(m.at(b + n), base) << b + n;
    EXPECT_EQ(m.at(b + "attn_norm.weight"), DType::F32);
    EXPECT_EQ(m.at(b + "ffn_norm.weight"), DType::F32);
    if (s.arch == "qwen2") {
      EXPECT_EQ(m.at(b + "attn_k.bias"), DType::F32);
    }
  }
  EXPECT_EQ(n_more, mix ? static_cast<int>(more_bits.size()) : 0);
}

TEST(QuantPlan, R1Qwen15bMixes) {
  for (QuantFileType ft : {QuantFileType::kQ8_0, QuantFileType::kQ4_0, QuantFileType::kQ4_K_M,
                           QuantFileType::kQ5_K_M, QuantFileType::kQ6_K})
    ExpectMix(kQwen15, ft, kMoreBits28);
}

TEST(QuantPlan, R1Llama8bMixes) {
  for (QuantFileType ft : {QuantFileType::kQ8_0, QuantFileType::kQ4_0, QuantFileType::kQ4_K_M,
                           QuantFileType::kQ5_K_M, QuantFileType::kQ6_K})
    ExpectMix(kLlama8, ft, kMoreBits32);
}

TEST(QuantPlan, OrderIsLlamaCppsAndIndependentOfInputOrder) {
  auto in = Tensors(kQwen15);
  auto a = PlanQuantization(in, InfoOf(kQwen15), QuantFileType::kQ4_K_M);
  std::reverse(in.begin(), in.end());
  auto b = PlanQuantization(in, InfoOf(kQwen15), QuantFileType::kQ4_K_M);
  ASSERT_TRUE(a.ok() && b.ok());
  ASSERT_EQ(a.value().size(), b.value().size());
  for (size_t i = 0; i < a.value().size(); ++i) {
    EXPECT_EQ(a.value()[i].name, b.value()[i].name);
    EXPECT_EQ(a.value()[i].to, b.value()[i].to);
  }
  // Global tensors first (by name), then layer 0, 1, ..., 10, ... numerically.
  const auto& p = a.value();
  EXPECT_EQ(p[0].name, "output.weight");
  EXPECT_EQ(p[1].name, "output_norm.weight");
  EXPECT_EQ(p[2].name, "token_embd.weight");
  EXPECT_EQ(p[3].name, "blk.0.attn_k.bias");
  auto pos = [&](const std::string& n) {
    return std::find_if(p.begin(), p.end(), [&](const QuantTensorPlan& q) { return q.name == n; }) -
           p.begin();
  };
  EXPECT_LT(pos("blk.2.ffn_up.weight"), pos("blk.10.attn_k.bias"));
}

TEST(QuantPlan, TiedEmbeddingTakesTheHeadType) {
  Shape s = kQwen15;
  s.tied = true;
  EXPECT_EQ(PlanMap(s, QuantFileType::kQ4_K_M).at("token_embd.weight"), DType::Q6_K);
  EXPECT_EQ(PlanMap(s, QuantFileType::kQ4_0).at("token_embd.weight"), DType::Q6_K);
  EXPECT_EQ(PlanMap(s, QuantFileType::kQ8_0).at("token_embd.weight"), DType::Q8_0);
}

TEST(QuantPlan, SeventyBAttnVGetsQ5K) {
  // 80 layers with grouped-query attention: llama.cpp's 70B class.
  Shape s{"llama", 80, 8192, 28672, 1024, 128256, false};
  auto m = PlanMap(s, QuantFileType::kQ4_K_M);
  EXPECT_EQ(m.at("blk.0.attn_v.weight"), DType::Q6_K);   // more bits
  EXPECT_EQ(m.at("blk.11.attn_v.weight"), DType::Q5_K);  // would be Q4_K
  EXPECT_EQ(m.at("blk.11.ffn_down.weight"), DType::Q4_K);
  EXPECT_EQ(PlanMap(s, QuantFileType::kQ5_K_M).at("blk.11.attn_v.weight"), DType::Q5_K);
}

TEST(QuantPlan, RowLengthFallbacks) {
  // hidden 64: not a multiple of 256.
  Shape s{"qwen2", 2, 64, 96, 32, 1000, false};
  auto q6 = PlanQuantization(Tensors(s), InfoOf(s), QuantFileType::kQ6_K);
  ASSERT_TRUE(q6.ok()) << q6.status().message();
  for (const QuantTensorPlan& p : q6.value()) {
    if (p.dims.size() < 2) continue;
    EXPECT_EQ(p.to, DType::Q8_0) << p.name;  // Q6_K -> Q8_0
    // The head's rule picks Q8_0 itself when 256 does not divide its rows; others fall back.
    EXPECT_EQ(p.fallback, p.name != "output.weight") << p.name;
  }
  // Q4_0: 32 divides 64, so only the head (Q6_K) falls back to Q8_0.
  auto q40 = PlanQuantization(Tensors(s), InfoOf(s), QuantFileType::kQ4_0);
  ASSERT_TRUE(q40.ok());
  for (const QuantTensorPlan& p : q40.value())
    EXPECT_EQ(p.fallback, p.name == "output.weight") << p.name;
  auto m = PlanMap(s, QuantFileType::kQ4_0);
  EXPECT_EQ(m.at("output.weight"), DType::Q8_0);
  EXPECT_EQ(m.at("blk.0.attn_q.weight"), DType::Q4_0);
  // Q4_K would become Q5_0, which Strata cannot run: a clear error, not another type.
  auto k = PlanQuantization(Tensors(s), InfoOf(s), QuantFileType::kQ4_K_M);
  ASSERT_FALSE(k.ok());
  EXPECT_NE(k.status().message().find("Q5_0"), std::string::npos) << k.status().message();
  auto k5 = PlanQuantization(Tensors(s), InfoOf(s), QuantFileType::kQ5_K_M);
  ASSERT_FALSE(k5.ok());
  EXPECT_NE(k5.status().message().find("Q5_1"), std::string::npos) << k5.status().message();
  // Row length 48: not even a multiple of 32 -> F16.
  Shape odd{"llama", 1, 48, 96, 48, 100, false};
  auto o = PlanMap(odd, QuantFileType::kQ8_0, DType::F32);
  EXPECT_EQ(o.at("blk.0.attn_q.weight"), DType::F16);
  EXPECT_EQ(o.at("blk.0.ffn_down.weight"), DType::Q8_0);  // rows of 96
}

TEST(QuantPlan, NeverQuantized) {
  EXPECT_FALSE(TensorAllowsQuantization("blk.0.attn_norm.weight", 1));
  EXPECT_FALSE(TensorAllowsQuantization("blk.0.attn_q.bias", 2));
  EXPECT_FALSE(TensorAllowsQuantization("blk.0.attn_q.weight", 1));
  EXPECT_FALSE(TensorAllowsQuantization("blk.0.ffn_gate_inp.weight", 2));
  EXPECT_FALSE(TensorAllowsQuantization("blk.0.attn_k_norm.weight", 2));
  EXPECT_FALSE(TensorAllowsQuantization("position_embd.weight", 2));
  EXPECT_TRUE(TensorAllowsQuantization("blk.0.attn_q.weight", 2));
  EXPECT_TRUE(TensorAllowsQuantization("token_embd.weight", 2));
}

TEST(QuantPlan, RefusesQuantizedInputAndParsesTypes) {
  auto t = Tensors(kQwen15);
  t[5].type = DType::Q8_0;
  auto p = PlanQuantization(t, InfoOf(kQwen15), QuantFileType::kQ6_K);
  ASSERT_FALSE(p.ok());
  EXPECT_NE(p.status().message().find("already quantized"), std::string::npos);
  EXPECT_EQ(ParseQuantFileType("q4_k_m").value(), QuantFileType::kQ4_K_M);
  EXPECT_EQ(ParseQuantFileType("Q8_0").value(), QuantFileType::kQ8_0);
  EXPECT_EQ(ParseQuantFileType("q6_K").value(), QuantFileType::kQ6_K);
  EXPECT_FALSE(ParseQuantFileType("q4_k").ok());
  EXPECT_FALSE(ParseQuantFileType("q3_k_m").ok());
  EXPECT_EQ(static_cast<uint32_t>(QuantFileType::kQ4_K_M), 15u);  // llama_ftype values
  EXPECT_EQ(static_cast<uint32_t>(QuantFileType::kQ8_0), 7u);
}

// ---- quantization error: llama.cpp's tests/test-quantize-fns.cpp bound ----------------------

TEST(QuantError, WithinLlamaCppTotalErrorBound) {
  // Its synthetic data: 0.1 + 2 cos(i), 4096 values; error = sqrt(sum of squares) / n.
  const size_t n = 32 * 128;
  std::vector<float> x(n), y(n);
  for (size_t i = 0; i < n; ++i)
    x[i] = static_cast<float>(0.1 + 2.0f * cosf(static_cast<float>(i)));
  for (DType t : {DType::Q8_0, DType::Q4_0, DType::Q4_K, DType::Q5_K, DType::Q6_K}) {
    std::vector<uint8_t> q(RowBytes(t, static_cast<int64_t>(n)).value());
    QuantizeRow(t, x.data(), q.data(), static_cast<int64_t>(n));
    DequantizeRow(t, q.data(), y.data(), static_cast<int64_t>(n));
    double ss = 0;
    for (size_t i = 0; i < n; ++i) ss += (double(x[i]) - y[i]) * (double(x[i]) - y[i]);
    const double err = std::sqrt(ss) / static_cast<double>(n);
    EXPECT_LT(err, 0.002) << DTypeName(t);
    EXPECT_GT(err, 0.0) << DTypeName(t);  // really quantized
  }
}

TEST(QuantError, MoreBitsMeansLessError) {
  const int64_t n = 256 * 64;
  std::vector<float> x(static_cast<size_t>(n)), y(x.size());
  uint32_t s = 12345;
  for (float& v : x) {  // a heavy-ish tailed distribution, as trained weights have
    s = s * 1664525u + 1013904223u;
    const float u = (static_cast<float>(s >> 8) + 0.5f) / 16777216.0f;
    v = 0.02f * std::tan(3.0f * (u - 0.5f));
  }
  auto rmse = [&](DType t) {
    std::vector<uint8_t> q(RowBytes(t, n).value());
    QuantizeRow(t, x.data(), q.data(), n);
    DequantizeRow(t, q.data(), y.data(), n);
    double ss = 0;
    for (size_t i = 0; i < x.size(); ++i) ss += (double(x[i]) - y[i]) * (double(x[i]) - y[i]);
    return std::sqrt(ss / static_cast<double>(n));
  };
  const double q4k = rmse(DType::Q4_K), q5k = rmse(DType::Q5_K), q6k = rmse(DType::Q6_K),
               q8 = rmse(DType::Q8_0), q40 = rmse(DType::Q4_0);
  EXPECT_LT(q5k, q4k);
  EXPECT_LT(q6k, q5k);
  EXPECT_LT(q8, q6k);
  EXPECT_LT(q4k, q40);  // the K-quant fit beats the plain 4-bit scale
}

// ---- end to end ------------------------------------------------------------------------------

std::string TempPath(const std::string& name) {
  return (std::filesystem::temp_directory_path() / ("strata_quant_test_" + name)).string();
}

// A 512-token SPM-style vocabulary (synth copies the tokenizer from a vocabulary file), so that
// the embedding and head stay small and the test fast.
std::string TinyVocab() {
  std::string path = TempPath("vocab512.gguf");
  gguf::Writer w;
  std::vector<std::string> tokens = {"<unk>", "<s>", "</s>"};
  while (tokens.size() < 512) tokens.push_back("tok" + std::to_string(tokens.size()));
  w.SetString("tokenizer.ggml.model", "llama");
  w.SetStringArray("tokenizer.ggml.tokens", tokens);
  w.SetFloat32Array("tokenizer.ggml.scores", std::vector<float>(tokens.size(), 0.0f));
  w.SetUint32("tokenizer.ggml.bos_token_id", 1);
  w.SetUint32("tokenizer.ggml.eos_token_id", 2);
  Status st = w.Write(path);
  EXPECT_TRUE(st.ok()) << st.message();
  return path;
}

// A tiny llama model with rows of 256 (the K-quant block), 8 layers.
std::string SynthTiny(DType type, bool tied, const std::string& name) {
  std::string path = TempPath(name);
  testdata::TinyModelSpec s;
  s.shape = "tiny-llama-k";
  s.n_layers = 8;
  s.r1_tokens = false;
  s.tied = tied;
  s.type = type;
  s.seed = 3;
  s.vocab = TinyVocab();
  Status st = testdata::WriteTinyModel(s, path);
  EXPECT_TRUE(st.ok()) << st.message();
  return path;
}

TEST(QuantizeModel, Q4KMEndToEnd) {
  const std::string in = SynthTiny(DType::F16, /*tied=*/false, "in_f16.gguf");
  const std::string out = TempPath("out_q4km.gguf");
  int lines = 0;
  QuantizeOptions opts;
  opts.threads = 2;
  opts.log = [&](const std::string&) { ++lines; };
  auto st = QuantizeModel(in, out, QuantFileType::kQ4_K_M, opts);
  ASSERT_TRUE(st.ok()) << st.status().message();
  auto src = gguf::File::Open(in).value();
  auto dst = gguf::File::Open(out).value();
  EXPECT_EQ(lines, static_cast<int>(src->tensors().size()));
  EXPECT_EQ(st.value().n_tensors, static_cast<int>(src->tensors().size()));
  uint64_t out_bytes = 0;
  for (const auto& t : dst->tensors()) out_bytes += t.nbytes;
  EXPECT_EQ(st.value().bytes_out, out_bytes);
  EXPECT_LT(st.value().bytes_out * 5, st.value().bytes_in * 2);  // 16 -> ~5 bits per weight

  // Metadata: everything kept, file type set.
  EXPECT_EQ(dst->GetUint("general.file_type").value(), 15u);
  EXPECT_EQ(dst->GetUint("general.quantization_version").value(), 2u);
  for (const auto& e : src->metadata()) {
    if (e.key == "general.file_type") continue;
    const gguf::MetaEntry* d = dst->Find(e.key);
    ASSERT_NE(d, nullptr) << e.key;
    EXPECT_EQ(gguf::ValueToString(d->value, 1000000), gguf::ValueToString(e.value, 1000000))
        << e.key;
  }
  EXPECT_EQ(dst->alignment(), src->alignment());

  // Types. 8 layers: n/8 = 1 and 7n/8 = 7, so use_more_bits holds for layers 0, 3, 6, 7.
  const std::set<int> more = {0, 3, 6, 7};
  std::map<std::string, DType> types;
  for (const auto& t : dst->tensors()) types[std::string(t.name)] = t.type;
  EXPECT_EQ(types.at("output.weight"), DType::Q6_K);
  EXPECT_EQ(types.at("token_embd.weight"), DType::Q4_K);
  EXPECT_EQ(types.at("output_norm.weight"), DType::F32);
  for (int i = 0; i < 8; ++i) {
    const std::string b = "blk." + std::to_string(i) + ".";
    EXPECT_EQ(types.at(b + "attn_v.weight"), more.count(i) ? DType::Q6_K : DType::Q4_K) << i;
    EXPECT_EQ(types.at(b + "ffn_down.weight"), more.count(i) ? DType::Q6_K : DType::Q4_K) << i;
    EXPECT_EQ(types.at(b + "attn_q.weight"), DType::Q4_K);
    EXPECT_EQ(types.at(b + "attn_norm.weight"), DType::F32);
  }

  // Data: each tensor dequantizes close to the source, and equals QuantizeRow of it.
  for (const auto& t : dst->tensors()) {
    const gguf::TensorInfo* s = src->FindTensor(t.name);
    ASSERT_NE(s, nullptr);
    ASSERT_EQ(s->dims, t.dims);
    const int64_t n = t.dims[0];
    std::vector<float> a(static_cast<size_t>(n)), b(a.size());
    std::vector<uint8_t> q(RowBytes(t.type, n).value());
    const int64_t rows = t.n_rows();
    for (int64_t r : {int64_t{0}, rows / 2, rows - 1}) {
      DequantizeRow(s->type, s->data + r * RowBytes(s->type, n).value(), a.data(), n);
      const uint8_t* got = t.data + r * q.size();
      QuantizeRow(t.type, a.data(), q.data(), n);
      EXPECT_EQ(0, std::memcmp(got, q.data(), q.size())) << t.name << " row " << r;
      DequantizeRow(t.type, got, b.data(), n);
      double ss = 0, sd = 0;
      for (int64_t i = 0; i < n; ++i) {
        ss += (double(a[i]) - b[i]) * (double(a[i]) - b[i]);
        sd += double(a[i]) * a[i];
      }
      EXPECT_LT(std::sqrt(ss), 0.2 * std::sqrt(sd) + 1e-6) << t.name;
    }
  }

  // The engine loads it.
  auto m = Model::Load(out);
  ASSERT_TRUE(m.ok()) << m.status().message();
  EXPECT_EQ(m.value()->layer(3).wv.type, DType::Q6_K);
  EXPECT_EQ(m.value()->layer(1).wv.type, DType::Q4_K);
  EXPECT_EQ(m.value()->output().type, DType::Q6_K);
  std::filesystem::remove(in);
  std::filesystem::remove(out);
}

TEST(QuantizeModel, Q8_0FromF32TiedAndAllTypesLoad) {
  const std::string in = SynthTiny(DType::F32, /*tied=*/true, "in_f32_tied.gguf");
  for (QuantFileType ft :
       {QuantFileType::kQ8_0, QuantFileType::kQ4_0, QuantFileType::kQ5_K_M, QuantFileType::kQ6_K}) {
    const std::string out = TempPath(std::string("out_") + QuantFileTypeName(ft) + ".gguf");
    QuantizeOptions opts;
    opts.threads = 2;
    auto st = QuantizeModel(in, out, ft, opts);
    ASSERT_TRUE(st.ok()) << st.status().message();
    auto m = Model::Load(out);
    ASSERT_TRUE(m.ok()) << QuantFileTypeName(ft) << ": " << m.status().message();
    // Tied: the embedding is the head, Q8_0 in Q8_0 files and Q6_K otherwise.
    EXPECT_EQ(m.value()->tok_embd().type, ft == QuantFileType::kQ8_0 ? DType::Q8_0 : DType::Q6_K);
    EXPECT_EQ(m.value()->layer(2).wq.type, DefaultTensorType(ft));
    EXPECT_EQ(m.value()->file().GetUint("general.file_type").value(), static_cast<uint32_t>(ft));
    std::filesystem::remove(out);
  }
  std::filesystem::remove(in);
}

TEST(QuantizeModel, Errors) {
  // Not a GGUF.
  const std::string junk = TempPath("junk.gguf");
  FILE* f = std::fopen(junk.c_str(), "wb");
  ASSERT_NE(f, nullptr);
  std::fputs("this is not a gguf file at all", f);
  std::fclose(f);
  auto r = QuantizeModel(junk, TempPath("junk_out.gguf"), QuantFileType::kQ8_0);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find(junk), std::string::npos) << r.status().message();
  auto missing =
      QuantizeModel(TempPath("does_not_exist.gguf"), TempPath("x.gguf"), QuantFileType::kQ8_0);
  EXPECT_FALSE(missing.ok());
  std::filesystem::remove(junk);

  // Already quantized.
  const std::string q = SynthTiny(DType::Q8_0, true, "in_q8.gguf");
  auto again = QuantizeModel(q, TempPath("again.gguf"), QuantFileType::kQ4_K_M);
  ASSERT_FALSE(again.ok());
  EXPECT_NE(again.status().message().find("already quantized"), std::string::npos)
      << again.status().message();
  EXPECT_FALSE(std::filesystem::exists(TempPath("again.gguf")));
  std::filesystem::remove(q);
}

}  // namespace
}  // namespace strata
