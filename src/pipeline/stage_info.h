// What a loaded model range is, in the stage protocol's terms (net::StageInfo).
#pragma once

#include "gguf/gguf.h"
#include "model/weights.h"
#include "net/protocol.h"

namespace strata::pipeline {

// SHA-256 of the GGUF header, metadata and tensor table (the bytes before the tensor data
// section): identical for the same file, different for another model, quantization or
// tokenizer. Tensor data is not hashed (it would mean reading the whole file).
net::Digest ModelFingerprint(const gguf::File& file);

// The StageInfo describing a loaded model range.
net::StageInfo StageInfoFor(const Model& model);

}  // namespace strata::pipeline
