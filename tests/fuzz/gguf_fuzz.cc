// libFuzzer target for the GGUF reader: any input must parse or fail with a message, never
// crash; when it parses, every metadata value and every tensor byte range is touched and the
// reader's invariants (views inside the image, aligned data section) are checked.
#include <cstddef>
#include <cstdint>
#include <cstdlib>

#include "gguf/gguf.h"

namespace {

using strata::gguf::File;
using strata::gguf::MetaEntry;
using strata::gguf::TensorInfo;
using strata::gguf::ValueType;

void Check(bool cond) {
  if (!cond) std::abort();
}

// Keeps the compiler from discarding reads.
volatile uint64_t g_sink = 0;

void TouchMetadata(const File& f) {
  uint64_t sum = 0;
  for (const MetaEntry& e : f.metadata()) {
    sum += e.key.size() + ValueToString(e.value, 64).size();
    Check(f.Find(e.key) == &e);  // keys are unique
    sum += f.GetUint(e.key).ok() + f.GetInt(e.key).ok() + f.GetFloat(e.key).ok() +
           f.GetBool(e.key).ok() + f.GetString(e.key).ok();
    if (e.value.type == ValueType::kArray) {
      Check(e.value.n_elems <= f.file_size());
      if (e.value.elem_type == ValueType::kString) {
        Check(e.value.str_elems.size() == e.value.n_elems);
        auto a = f.GetStringArray(e.key);
        Check(a.ok());
        for (auto s : a.value()) sum += s.empty() ? 0 : static_cast<uint8_t>(s.back());
      } else {
        auto fa = f.GetFloatArray(e.key);
        auto ia = f.GetIntArray(e.key);
        Check(fa.ok() || ia.ok());
        if (fa.ok())
          for (float x : fa.value()) sum += static_cast<uint64_t>(x != x);
        if (ia.ok())
          for (int64_t x : ia.value()) sum += static_cast<uint64_t>(x);
      }
    } else if (e.value.type == ValueType::kString) {
      const auto* p = reinterpret_cast<const uint8_t*>(e.value.s.data());
      Check(e.value.s.empty() ||
            (p >= f.base() && p + e.value.s.size() <= f.base() + f.file_size()));
      for (char c : e.value.s) sum += static_cast<uint8_t>(c);
    }
  }
  g_sink = g_sink + sum;
}

void TouchTensors(const File& f) {
  uint64_t sum = 0;
  Check(f.alignment() > 0 && (f.alignment() & (f.alignment() - 1)) == 0);
  Check(f.data_offset() % f.alignment() == 0);
  const uint8_t* end = f.base() + f.file_size();
  for (const TensorInfo& t : f.tensors()) {
    Check(!t.dims.empty() && t.dims.size() <= 4);
    Check(f.FindTensor(t.name) == &t);
    Check(t.offset % f.alignment() == 0);
    Check(t.nbytes > 0 && t.data >= f.base() && t.nbytes <= static_cast<uint64_t>(end - t.data));
    sum += static_cast<uint64_t>(t.n_elements()) + static_cast<uint64_t>(t.n_rows());
    sum += t.data[0] + t.data[t.nbytes / 2] + t.data[t.nbytes - 1];
  }
  g_sink = g_sink + sum;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto f = File::Parse(data, size);
  if (!f.ok()) {
    Check(!f.status().message().empty());
    return 0;
  }
  TouchMetadata(*f.value());
  TouchTensors(*f.value());
  return 0;
}
