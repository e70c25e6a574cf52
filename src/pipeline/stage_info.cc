#include "pipeline/stage_info.h"

#include <algorithm>

#include "net/auth.h"

namespace strata::pipeline {

net::Digest ModelFingerprint(const gguf::File& file) {
  const size_t n = std::min<size_t>(static_cast<size_t>(file.data_offset()), file.file_size());
  return net::Sha256(file.base(), n);
}

net::StageInfo StageInfoFor(const Model& model) {
  net::StageInfo s;
  s.fingerprint = ModelFingerprint(model.file());
  const ModelConfig& c = model.config();
  s.n_layers = static_cast<uint32_t>(c.n_layers);
  s.first = static_cast<uint32_t>(model.first_layer());
  s.last = static_cast<uint32_t>(model.last_layer());
  s.hidden = static_cast<uint32_t>(c.hidden);
  s.n_vocab = static_cast<uint32_t>(c.n_vocab);
  s.model_name = c.name.empty() ? c.arch_name : c.name;
  return s;
}

}  // namespace strata::pipeline
