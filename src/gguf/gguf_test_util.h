// Helpers shared by the GGUF tests (gguf_test.cc, gguf_hostile_test.cc): temporary files,
// byte patterns, a small valid file, parsing from memory.
#pragma once

#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iterator>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "base/fp16.h"
#include "gguf/gguf.h"

namespace strata::gguf::test_util {

// ---------------------------------------------------------------------------------------------
// Helpers

inline std::string TempPath(const std::string& name) {
  return testing::TempDir() + "/strata_gguf_test_" + std::to_string(::getpid()) + "_" + name;
}

inline std::vector<uint8_t> ReadAll(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(in), {});
}

inline bool Exists(const std::string& path) { return std::ifstream(path).good(); }

inline std::shared_ptr<File> WriteAndOpen(const Writer& w, const std::string& name) {
  const std::string path = TempPath(name);
  Status st = w.Write(path);
  EXPECT_TRUE(st.ok()) << st.message();
  auto f = File::Open(path);
  EXPECT_TRUE(f.ok()) << f.status().message();
  std::remove(path.c_str());  // the mapping stays valid after unlink
  return f.ok() ? f.value() : nullptr;
}

inline std::vector<uint8_t> WriteToBytes(const Writer& w, const std::string& name) {
  const std::string path = TempPath(name);
  Status st = w.Write(path);
  EXPECT_TRUE(st.ok()) << st.message();
  std::vector<uint8_t> bytes = ReadAll(path);
  std::remove(path.c_str());
  return bytes;
}

// Parses a heap copy of exactly `size` bytes so that ASan sees any read past the end.
inline Status ParseBytes(const uint8_t* data, size_t size) {
  std::vector<uint8_t> copy(data, data + size);
  auto f = File::Parse(copy.empty() ? nullptr : copy.data(), copy.size());
  return f.status();
}
inline Status ParseBytes(const std::vector<uint8_t>& b) { return ParseBytes(b.data(), b.size()); }

// Byte-level builder for hand-made (mostly malformed) files.
class Raw {
 public:
  template <typename T>
  Raw& Put(T v) {
    const size_t at = b_.size();
    b_.resize(at + sizeof(T));
    std::memcpy(b_.data() + at, &v, sizeof(T));
    return *this;
  }
  Raw& Str(std::string_view s) {
    Put<uint64_t>(s.size());
    b_.insert(b_.end(), s.begin(), s.end());
    return *this;
  }
  Raw& Header(uint64_t n_tensors, uint64_t n_kv, uint32_t version = 3) {
    b_.insert(b_.end(), {'G', 'G', 'U', 'F'});
    return Put<uint32_t>(version).Put<uint64_t>(n_tensors).Put<uint64_t>(n_kv);
  }
  Raw& KvU32(std::string_view key, uint32_t v) {
    return Str(key).Put<uint32_t>(static_cast<uint32_t>(ValueType::kUint32)).Put<uint32_t>(v);
  }
  // The start of an array entry: key, kArray, the element type (raw: may be invalid) and the
  // element count; the elements are up to the caller.
  Raw& ArrayKv(std::string_view key, uint32_t elem_type, uint64_t n) {
    return Str(key).Put<uint32_t>(static_cast<uint32_t>(ValueType::kArray)).Put(elem_type).Put(n);
  }
  Raw& ArrayKv(std::string_view key, ValueType elem_type, uint64_t n) {
    return ArrayKv(key, static_cast<uint32_t>(elem_type), n);
  }
  Raw& TensorInfo(std::string_view name, const std::vector<uint64_t>& dims, uint32_t type,
                  uint64_t offset) {
    Str(name).Put<uint32_t>(static_cast<uint32_t>(dims.size()));
    for (uint64_t d : dims) Put<uint64_t>(d);
    return Put<uint32_t>(type).Put<uint64_t>(offset);
  }
  Raw& PadTo(size_t alignment) {
    b_.resize((b_.size() + alignment - 1) / alignment * alignment, 0);
    return *this;
  }
  Raw& Zeros(size_t n) {
    b_.resize(b_.size() + n, 0);
    return *this;
  }
  const std::vector<uint8_t>& bytes() const { return b_; }

 private:
  std::vector<uint8_t> b_;
};

// Expects parsing to fail with a message containing `needle`.
#define EXPECT_PARSE_ERROR(raw, needle)                                            \
  do {                                                                             \
    Status _st = ParseBytes((raw).bytes());                                        \
    EXPECT_FALSE(_st.ok()) << "expected an error containing '" << (needle) << "'"; \
    EXPECT_NE(_st.message().find(needle), std::string::npos) << _st.message();     \
  } while (0)

inline std::vector<uint8_t> Pattern(size_t n, uint32_t seed) {
  std::vector<uint8_t> b(n);
  std::mt19937 rng(seed);
  for (auto& x : b) x = static_cast<uint8_t>(rng());
  return b;
}

// Reads every value and every tensor byte range of a parsed file; returns a checksum so the
// work cannot be optimized away.
inline uint64_t TouchEverything(const File& f) {
  uint64_t sum = 0;
  for (const MetaEntry& e : f.metadata()) {
    sum += ValueToString(e.value, 1u << 20).size() + e.key.size();
    (void)f.GetUint(e.key);
    (void)f.GetInt(e.key);
    (void)f.GetFloat(e.key);
    (void)f.GetBool(e.key);
    (void)f.GetString(e.key);
    (void)f.GetStringArray(e.key);
    (void)f.GetFloatArray(e.key);
    (void)f.GetIntArray(e.key);
  }
  for (const TensorInfo& t : f.tensors()) {
    sum += static_cast<uint64_t>(t.n_elements()) + static_cast<uint64_t>(t.n_rows());
    if (t.nbytes > 0) sum += t.data[0] + t.data[t.nbytes - 1];
  }
  return sum;
}

// A small valid file: a few kinds of metadata and two tensors (F32 and Q8_0).
inline Writer SmallWriter() {
  Writer w;
  w.SetString("general.architecture", "llama");
  w.SetUint32("llama.block_count", 2);
  w.SetFloat32("llama.rope.freq_base", 10000.0f);
  w.SetBool("flag", true);
  w.SetStringArray("tokenizer.ggml.tokens", {"a", "", "bc"});
  w.SetInt32Array("ids", {1, -2, 3});
  EXPECT_TRUE(w.AddTensorData("t.f32", {4, 2}, DType::F32, Pattern(32, 1)).ok());
  EXPECT_TRUE(w.AddTensorData("t.q8", {32, 1}, DType::Q8_0, Pattern(34, 2)).ok());
  return w;
}

}  // namespace strata::gguf::test_util
