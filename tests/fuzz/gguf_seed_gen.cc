// Writes a seed corpus of small valid GGUF files for gguf_fuzz into a directory:
//   gguf_seed_gen OUT_DIR [VOCAB.gguf]
// With a vocab file, also writes a shrunken copy of its tokenizer metadata (first entries of
// each array) so the fuzzer gets realistic keys without a 700 KB input.
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "gguf/gguf.h"

namespace strata::gguf {
namespace {

std::vector<uint8_t> Bytes(size_t n, uint8_t seed) {
  std::vector<uint8_t> b(n);
  for (size_t i = 0; i < n; ++i) b[i] = static_cast<uint8_t>(seed + i * 31);
  return b;
}

Status AddTensors(Writer& w) {
  STRATA_RETURN_IF_ERROR(w.AddTensorData("token_embd.weight", {8, 4}, DType::F32, Bytes(128, 1)));
  STRATA_RETURN_IF_ERROR(w.AddTensorData("blk.0.attn_q.weight", {8, 8}, DType::F16, Bytes(128, 2)));
  STRATA_RETURN_IF_ERROR(w.AddTensorData("blk.0.ffn_up.weight", {4, 2}, DType::BF16, Bytes(16, 3)));
  STRATA_RETURN_IF_ERROR(w.AddTensorData("output.weight", {32, 2}, DType::Q8_0, Bytes(68, 4)));
  return w.AddTensorData("norm", {2, 2, 2, 2}, DType::F32, Bytes(64, 5));
}

Status WriteSeeds(const std::string& dir, const char* vocab_path) {
  int n = 0;
  auto emit = [&](const Writer& w, const char* name) -> Status {
    ++n;
    return w.Write(dir + "/" + name + ".gguf");
  };
  {
    Writer w;
    STRATA_RETURN_IF_ERROR(emit(w, "empty"));
  }
  {
    Writer w;
    w.SetUint8("u8", 7);
    w.SetInt8("i8", -7);
    w.SetUint16("u16", 700);
    w.SetInt16("i16", -700);
    w.SetUint32("u32", 70000);
    w.SetInt32("i32", -70000);
    w.SetUint64("u64", 1ull << 40);
    w.SetInt64("i64", -(1ll << 40));
    w.SetFloat32("f32", 0.5f);
    w.SetFloat64("f64", -0.25);
    w.SetBool("bool", true);
    w.SetString("str", "h\xc3\xa9llo");
    w.SetString("empty", "");
    STRATA_RETURN_IF_ERROR(emit(w, "scalars"));
  }
  {
    Writer w;
    w.SetStringArray("tokenizer.ggml.tokens", {"<unk>", "<s>", "</s>", "\xe2\x96\x81the", ""});
    w.SetFloat32Array("tokenizer.ggml.scores", {0, 0, 0, -1.5f, -2});
    w.SetInt32Array("tokenizer.ggml.token_type", {2, 3, 3, 1, 1});
    w.SetStringArray("tokenizer.ggml.merges", {"a b", "ab c"});
    STRATA_RETURN_IF_ERROR(emit(w, "arrays"));
  }
  {
    Writer w;
    w.SetString("general.architecture", "llama");
    w.SetUint32("llama.block_count", 1);
    w.SetUint32("llama.embedding_length", 8);
    STRATA_RETURN_IF_ERROR(AddTensors(w));
    STRATA_RETURN_IF_ERROR(emit(w, "tensors"));
  }
  {
    Writer w;
    w.SetAlignment(64);
    w.SetString("general.architecture", "qwen2");
    STRATA_RETURN_IF_ERROR(AddTensors(w));
    STRATA_RETURN_IF_ERROR(emit(w, "tensors_align64"));
  }
  {
    Writer w;
    w.SetAlignment(8);
    STRATA_RETURN_IF_ERROR(w.AddTensorData("x", {3}, DType::F32, Bytes(12, 9)));
    STRATA_RETURN_IF_ERROR(emit(w, "tensor_align8"));
  }
  if (vocab_path) {
    STRATA_ASSIGN_OR_RETURN(auto vocab, File::Open(vocab_path));
    Writer w;
    for (const MetaEntry& e : vocab->metadata()) {
      MetaEntry small = e;
      const uint64_t kMax = 300;
      if (small.value.type == ValueType::kArray && small.value.n_elems > kMax) {
        small.value.n_elems = kMax;
        if (small.value.elem_type == ValueType::kString) small.value.str_elems.resize(kMax);
      }
      w.CopyEntry(small);
    }
    STRATA_RETURN_IF_ERROR(emit(w, "vocab_small"));
  }
  std::printf("wrote %d seed files to %s\n", n, dir.c_str());
  return Status::Ok();
}

}  // namespace
}  // namespace strata::gguf

int main(int argc, char** argv) {
  if (argc < 2 || argc > 3) {
    std::fprintf(stderr, "usage: %s OUT_DIR [VOCAB.gguf]\n", argv[0]);
    return 2;
  }
  strata::Status st = strata::gguf::WriteSeeds(argv[1], argc == 3 ? argv[2] : nullptr);
  if (!st.ok()) {
    std::fprintf(stderr, "gguf_seed_gen: %s\n", st.message().c_str());
    return 1;
  }
  return 0;
}
