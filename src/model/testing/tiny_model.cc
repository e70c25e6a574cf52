#include "model/testing/tiny_model.h"

#include <gtest/gtest.h>

#include <filesystem>

#include "model/synth.h"

namespace strata::testdata {

TinyModelSpec MiniSpec(const std::string& shape) {
  return {.shape = shape,
          .n_layers = 3,
          .hidden = 64,
          .ffn = 96,
          .n_heads = 4,
          .n_kv_heads = 2,
          .r1_tokens = false,
          .vocab = SpmVocab()};
}

Status WriteTinyModel(const TinyModelSpec& spec, const std::string& path) {
  STRATA_ASSIGN_OR_RETURN(SynthShape shape, NamedSynthShape(spec.shape));
  if (spec.n_layers > 0) shape.n_layers = spec.n_layers;
  if (spec.hidden > 0) shape.hidden = spec.hidden;
  if (spec.ffn > 0) shape.ffn = spec.ffn;
  if (spec.n_heads > 0) shape.n_heads = spec.n_heads;
  if (spec.n_kv_heads > 0) shape.n_kv_heads = spec.n_kv_heads;
  shape.tied_output = spec.tied;
  shape.r1_tokens = spec.r1_tokens;
  SynthOptions o;
  o.shape = shape;
  o.type = spec.type;
  o.seed = spec.seed;
  o.vocab_path = spec.vocab.empty() ? DefaultVocabFor(o.shape) : spec.vocab;
  o.threads = 2;
  return SynthesizeModel(o, path);
}

Result<std::string> TinyModelFile(const TinyModelSpec& spec, const std::string& name) {
  const std::string path = (std::filesystem::temp_directory_path() / name).string();
  STRATA_RETURN_IF_ERROR(WriteTinyModel(spec, path));
  return path;
}

std::string TinyModelPath(const TinyModelSpec& spec, const std::string& name) {
  auto path = TinyModelFile(spec, name);
  EXPECT_TRUE(path.ok()) << path.status().message();
  return path.ok() ? *path : std::string();
}

std::string TestVocab(const std::string& file) {
  return std::string(STRATA_TEST_DATA) + "/vocab/" + file;
}

}  // namespace strata::testdata
