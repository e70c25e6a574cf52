// GGUF reader/writer tests: round trips of every metadata type and of tensors, typed getters,
// the real vocab files, and hostile inputs (every malformed-file case must give a clear error,
// never a crash; run under ASan/UBSan to get the most out of the mutation test).
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

namespace strata::gguf {
namespace {

// ---------------------------------------------------------------------------------------------
// Helpers

std::string TempPath(const std::string& name) {
  return testing::TempDir() + "/strata_gguf_test_" + std::to_string(::getpid()) + "_" + name;
}

std::vector<uint8_t> ReadAll(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(in), {});
}

bool Exists(const std::string& path) { return std::ifstream(path).good(); }

std::shared_ptr<File> WriteAndOpen(const Writer& w, const std::string& name) {
  const std::string path = TempPath(name);
  Status st = w.Write(path);
  EXPECT_TRUE(st.ok()) << st.message();
  auto f = File::Open(path);
  EXPECT_TRUE(f.ok()) << f.status().message();
  std::remove(path.c_str());  // the mapping stays valid after unlink
  return f.ok() ? f.value() : nullptr;
}

std::vector<uint8_t> WriteToBytes(const Writer& w, const std::string& name) {
  const std::string path = TempPath(name);
  Status st = w.Write(path);
  EXPECT_TRUE(st.ok()) << st.message();
  std::vector<uint8_t> bytes = ReadAll(path);
  std::remove(path.c_str());
  return bytes;
}

// Parses a heap copy of exactly `size` bytes so that ASan sees any read past the end.
Status ParseBytes(const uint8_t* data, size_t size) {
  std::vector<uint8_t> copy(data, data + size);
  auto f = File::Parse(copy.empty() ? nullptr : copy.data(), copy.size());
  return f.status();
}
Status ParseBytes(const std::vector<uint8_t>& b) { return ParseBytes(b.data(), b.size()); }

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
  Raw& TensorInfo(std::string_view name, std::vector<uint64_t> dims, uint32_t type,
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
#define EXPECT_PARSE_ERROR(raw, needle)                                              \
  do {                                                                               \
    Status _st = ParseBytes((raw).bytes());                                          \
    EXPECT_FALSE(_st.ok()) << "expected an error containing '" << (needle) << "'";   \
    EXPECT_NE(_st.message().find(needle), std::string::npos) << _st.message();       \
  } while (0)

std::vector<uint8_t> Pattern(size_t n, uint32_t seed) {
  std::vector<uint8_t> b(n);
  std::mt19937 rng(seed);
  for (auto& x : b) x = static_cast<uint8_t>(rng());
  return b;
}

// Reads every value and every tensor byte range of a parsed file; returns a checksum so the
// work cannot be optimized away.
uint64_t TouchEverything(const File& f) {
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
Writer SmallWriter() {
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

// ---------------------------------------------------------------------------------------------
// Metadata round trips

TEST(GgufRoundTrip, EveryScalarType) {
  Writer w;
  w.SetUint8("u8", 250);
  w.SetInt8("i8", -120);
  w.SetUint16("u16", 65000);
  w.SetInt16("i16", -32000);
  w.SetUint32("u32", 4000000000u);
  w.SetInt32("i32", -2000000000);
  w.SetUint64("u64", std::numeric_limits<uint64_t>::max());
  w.SetInt64("i64", std::numeric_limits<int64_t>::min());
  w.SetFloat32("f32", 0.1f);
  w.SetFloat64("f64", -1e300);
  w.SetBool("b_true", true);
  w.SetBool("b_false", false);
  auto f = WriteAndOpen(w, "scalars.gguf");
  ASSERT_TRUE(f);
  EXPECT_EQ(f->version(), 3u);
  ASSERT_EQ(f->metadata().size(), 12u);
  // Insertion order is preserved.
  EXPECT_EQ(f->metadata()[0].key, "u8");
  EXPECT_EQ(f->metadata()[11].key, "b_false");

  auto type_of = [&](const char* k) { return f->Find(k)->value.type; };
  EXPECT_EQ(type_of("u8"), ValueType::kUint8);
  EXPECT_EQ(type_of("i8"), ValueType::kInt8);
  EXPECT_EQ(type_of("u16"), ValueType::kUint16);
  EXPECT_EQ(type_of("i16"), ValueType::kInt16);
  EXPECT_EQ(type_of("u32"), ValueType::kUint32);
  EXPECT_EQ(type_of("i32"), ValueType::kInt32);
  EXPECT_EQ(type_of("u64"), ValueType::kUint64);
  EXPECT_EQ(type_of("i64"), ValueType::kInt64);
  EXPECT_EQ(type_of("f32"), ValueType::kFloat32);
  EXPECT_EQ(type_of("f64"), ValueType::kFloat64);
  EXPECT_EQ(type_of("b_true"), ValueType::kBool);

  EXPECT_EQ(f->GetUint("u8").value(), 250u);
  EXPECT_EQ(f->GetInt("i8").value(), -120);
  EXPECT_EQ(f->GetUint("u16").value(), 65000u);
  EXPECT_EQ(f->GetInt("i16").value(), -32000);
  EXPECT_EQ(f->GetUint("u32").value(), 4000000000u);
  EXPECT_EQ(f->GetInt("i32").value(), -2000000000);
  EXPECT_EQ(f->GetUint("u64").value(), std::numeric_limits<uint64_t>::max());
  EXPECT_EQ(f->GetInt("i64").value(), std::numeric_limits<int64_t>::min());
  EXPECT_EQ(f->GetFloat("f32").value(), static_cast<double>(0.1f));
  EXPECT_EQ(f->GetFloat("f64").value(), -1e300);
  EXPECT_TRUE(f->GetBool("b_true").value());
  EXPECT_FALSE(f->GetBool("b_false").value());
  EXPECT_TRUE(f->tensors().empty());
}

TEST(GgufRoundTrip, Strings) {
  const std::string non_ascii = "h\xc3\xa9llo \xe2\x9c\x93 \xe6\x97\xa5\xe6\x9c\xac \xf0\x9f\x98\x80";
  const std::string with_nul("a\0b", 3);
  Writer w;
  w.SetString("empty", "");
  w.SetString("utf8", non_ascii);
  w.SetString("nul", with_nul);
  w.SetString("", "empty key");
  w.SetString("long", std::string(100000, 'x'));
  auto f = WriteAndOpen(w, "strings.gguf");
  ASSERT_TRUE(f);
  EXPECT_EQ(f->GetString("empty").value(), "");
  EXPECT_EQ(f->GetString("utf8").value(), non_ascii);
  EXPECT_EQ(f->GetString("nul").value(), with_nul);
  EXPECT_EQ(f->GetString("").value(), "empty key");
  EXPECT_EQ(f->GetString("long").value().size(), 100000u);
}

TEST(GgufRoundTrip, StringAndNumericArrays) {
  const std::vector<std::string> strs = {"", "\xe2\x96\x81the", std::string("x\0y", 3), "<s>"};
  Writer w;
  w.SetStringArray("strs", strs);
  w.SetStringArray("no_strs", {});
  w.SetFloat32Array("floats", {1.5f, -0.0f, 3e38f});
  w.SetInt32Array("ints", {0, -1, std::numeric_limits<int32_t>::max()});
  w.SetInt32Array("no_ints", {});
  auto f = WriteAndOpen(w, "arrays.gguf");
  ASSERT_TRUE(f);
  auto s = f->GetStringArray("strs");
  ASSERT_TRUE(s.ok());
  ASSERT_EQ(s->size(), strs.size());
  for (size_t i = 0; i < strs.size(); ++i) EXPECT_EQ((*s)[i], strs[i]) << i;
  EXPECT_TRUE(f->GetStringArray("no_strs")->empty());
  EXPECT_EQ(f->GetFloatArray("floats").value(), (std::vector<float>{1.5f, -0.0f, 3e38f}));
  EXPECT_EQ(f->GetIntArray("ints").value(),
            (std::vector<int64_t>{0, -1, std::numeric_limits<int32_t>::max()}));
  EXPECT_TRUE(f->GetIntArray("no_ints")->empty());
  EXPECT_EQ(f->Find("ints")->value.elem_type, ValueType::kInt32);
  EXPECT_EQ(f->Find("ints")->value.n_elems, 3u);
}

// Arrays of every numeric element type, written through CopyEntry from hand-built values.
TEST(GgufRoundTrip, ArraysOfEveryNumericTypeViaCopyEntry) {
  struct Case {
    ValueType t;
    std::vector<uint8_t> raw;
    std::vector<int64_t> ints;  // expected GetIntArray (empty for floats)
  };
  auto le = [](std::initializer_list<uint64_t> vals, size_t width) {
    std::vector<uint8_t> b;
    for (uint64_t v : vals)
      for (size_t k = 0; k < width; ++k) b.push_back(static_cast<uint8_t>(v >> (8 * k)));
    return b;
  };
  std::vector<Case> cases = {
      {ValueType::kUint8, le({0, 255, 7}, 1), {0, 255, 7}},
      {ValueType::kInt8, le({0x80, 0x7f, 0xff}, 1), {-128, 127, -1}},
      {ValueType::kUint16, le({65535, 1}, 2), {65535, 1}},
      {ValueType::kInt16, le({0x8000, 5}, 2), {-32768, 5}},
      {ValueType::kUint32, le({4294967295u, 0}, 4), {4294967295ll, 0}},
      {ValueType::kInt32, le({0xffffffffu, 9}, 4), {-1, 9}},
      {ValueType::kUint64, le({1ull << 40}, 8), {1ll << 40}},
      {ValueType::kInt64, le({0xfffffffffffffffeull}, 8), {-2}},
      {ValueType::kBool, le({1, 0, 1}, 1), {1, 0, 1}},
  };
  Writer w;
  for (const Case& c : cases) {
    MetaEntry e;
    const std::string key = std::string("arr.") + ValueTypeName(c.t);
    e.key = key;
    e.value.type = ValueType::kArray;
    e.value.elem_type = c.t;
    e.value.n_elems = c.ints.size();
    e.value.elems = c.raw.data();
    w.CopyEntry(e);  // copies immediately; `key` and `raw` may go away afterwards
  }
  const float fl[] = {0.25f, -8.0f};
  const double db[] = {1e-300, 2.5};
  MetaEntry ef;
  ef.key = "arr.f32";
  ef.value.type = ValueType::kArray;
  ef.value.elem_type = ValueType::kFloat32;
  ef.value.n_elems = 2;
  ef.value.elems = reinterpret_cast<const uint8_t*>(fl);
  w.CopyEntry(ef);
  MetaEntry ed = ef;
  ed.key = "arr.f64";
  ed.value.elem_type = ValueType::kFloat64;
  ed.value.elems = reinterpret_cast<const uint8_t*>(db);
  w.CopyEntry(ed);

  auto f = WriteAndOpen(w, "numeric_arrays.gguf");
  ASSERT_TRUE(f);
  for (const Case& c : cases) {
    const std::string key = std::string("arr.") + ValueTypeName(c.t);
    const MetaEntry* e = f->Find(key);
    ASSERT_NE(e, nullptr) << key;
    EXPECT_EQ(e->value.type, ValueType::kArray);
    EXPECT_EQ(e->value.elem_type, c.t) << key;
    EXPECT_EQ(std::memcmp(e->value.elems, c.raw.data(), c.raw.size()), 0) << key;
    auto ints = f->GetIntArray(key);
    ASSERT_TRUE(ints.ok()) << ints.status().message();
    EXPECT_EQ(ints.value(), c.ints) << key;
    EXPECT_FALSE(f->GetFloatArray(key).ok()) << key;
  }
  EXPECT_EQ(f->GetFloatArray("arr.f32").value(), (std::vector<float>{0.25f, -8.0f}));
  EXPECT_EQ(f->GetFloatArray("arr.f64").value(), (std::vector<float>{static_cast<float>(1e-300), 2.5f}));
  EXPECT_FALSE(f->GetIntArray("arr.f32").ok());
}

TEST(GgufRoundTrip, CopyEntryOfScalarsAndStringsIsVerbatim) {
  auto src = WriteAndOpen(SmallWriter(), "copy_src.gguf");
  ASSERT_TRUE(src);
  Writer w;
  for (const MetaEntry& e : src->metadata()) w.CopyEntry(e);
  auto dst = WriteAndOpen(w, "copy_dst.gguf");
  ASSERT_TRUE(dst);
  ASSERT_EQ(dst->metadata().size(), src->metadata().size());
  for (size_t i = 0; i < src->metadata().size(); ++i) {
    const MetaEntry& a = src->metadata()[i];
    const MetaEntry& b = dst->metadata()[i];
    EXPECT_EQ(a.key, b.key);
    EXPECT_EQ(a.value.type, b.value.type);
    EXPECT_EQ(ValueToString(a.value, 100), ValueToString(b.value, 100));
  }
}

TEST(GgufRoundTrip, SetReplacesAndRemoveDeletes) {
  Writer w;
  w.SetUint32("a", 1);
  w.SetString("b", "x");
  w.SetUint32("c", 3);
  w.SetString("a", "now a string");  // replaces in place, keeps position
  w.Remove("c");
  w.Remove("not-there");
  auto f = WriteAndOpen(w, "replace.gguf");
  ASSERT_TRUE(f);
  ASSERT_EQ(f->metadata().size(), 2u);
  EXPECT_EQ(f->metadata()[0].key, "a");
  EXPECT_EQ(f->GetString("a").value(), "now a string");
  EXPECT_FALSE(f->Has("c"));
}

// ---------------------------------------------------------------------------------------------
// Tensors

struct TensorCase {
  std::string name;
  std::vector<int64_t> dims;
  DType type;
  uint64_t nbytes;
};

void CheckTensorRoundTrip(uint32_t alignment) {
  const std::vector<TensorCase> cases = {
      {"f32.1d", {7}, DType::F32, 28},
      {"f32.2d", {5, 3}, DType::F32, 60},
      {"f32.3d", {4, 3, 2}, DType::F32, 96},
      {"f32.4d", {2, 2, 2, 3}, DType::F32, 96},
      {"f16", {10, 3}, DType::F16, 60},
      {"bf16", {6}, DType::BF16, 12},
      {"q8_0", {64, 3}, DType::Q8_0, 2 * 34 * 3},
      {"q8_0.1blk", {32}, DType::Q8_0, 34},
  };
  Writer w;
  if (alignment != 32) w.SetAlignment(alignment);
  w.SetString("general.name", "tensors");
  std::vector<std::vector<uint8_t>> payloads;
  for (size_t i = 0; i < cases.size(); ++i) {
    payloads.push_back(Pattern(cases[i].nbytes, static_cast<uint32_t>(i + 10)));
    ASSERT_TRUE(w.AddTensorData(cases[i].name, cases[i].dims, cases[i].type, payloads.back()).ok());
  }
  // A streaming tensor filled by a callback.
  ASSERT_TRUE(w.AddTensor("filled", {3, 2}, DType::F32, [](uint8_t* dst, uint64_t n) {
                 EXPECT_EQ(n, 24u);
                 std::vector<float> v = {1, 2, 3, 4, 5, 6};
                 std::memcpy(dst, v.data(), n);
                 return Status::Ok();
               }).ok());

  auto f = WriteAndOpen(w, "tensors_" + std::to_string(alignment) + ".gguf");
  ASSERT_TRUE(f);
  EXPECT_EQ(f->alignment(), alignment);
  EXPECT_EQ(f->Has("general.alignment"), alignment != 32);
  EXPECT_EQ(f->data_offset() % alignment, 0u);
  EXPECT_LE(f->data_offset(), f->file_size());
  ASSERT_EQ(f->tensors().size(), cases.size() + 1);
  for (size_t i = 0; i < cases.size(); ++i) {
    const TensorInfo* t = f->FindTensor(cases[i].name);
    ASSERT_NE(t, nullptr) << cases[i].name;
    EXPECT_EQ(&f->tensors()[i], t) << "tensor order";
    EXPECT_EQ(t->dims, cases[i].dims) << t->name;
    EXPECT_EQ(t->type, cases[i].type) << t->name;
    EXPECT_EQ(t->nbytes, cases[i].nbytes) << t->name;
    int64_t n = 1;
    for (int64_t d : cases[i].dims) n *= d;
    EXPECT_EQ(t->n_elements(), n);
    EXPECT_EQ(t->n_rows(), n / cases[i].dims[0]);
    EXPECT_EQ(t->offset % alignment, 0u) << t->name;
    EXPECT_EQ(t->data, f->base() + f->data_offset() + t->offset) << t->name;
    // The mapping is page aligned, so the views are aligned in memory too.
    EXPECT_EQ(reinterpret_cast<uintptr_t>(t->data) % alignment, 0u) << t->name;
    EXPECT_EQ(std::memcmp(t->data, payloads[i].data(), t->nbytes), 0) << t->name;
  }
  const TensorInfo* filled = f->FindTensor("filled");
  ASSERT_NE(filled, nullptr);
  float got[6];
  std::memcpy(got, filled->data, sizeof(got));
  EXPECT_EQ(got[0], 1.0f);
  EXPECT_EQ(got[5], 6.0f);
  EXPECT_EQ(f->FindTensor("nope"), nullptr);
}

TEST(GgufTensors, RoundTripDefaultAlignment) { CheckTensorRoundTrip(32); }
TEST(GgufTensors, RoundTripAlignment64) { CheckTensorRoundTrip(64); }
TEST(GgufTensors, RoundTripAlignment256) { CheckTensorRoundTrip(256); }
TEST(GgufTensors, RoundTripAlignment8) { CheckTensorRoundTrip(8); }

TEST(GgufTensors, HalfPrecisionValuesSurvive) {
  const std::vector<float> vals = {0.0f, 1.0f, -2.5f, 65504.0f, 6.1035156e-05f, 0.333251953125f};
  std::vector<uint8_t> f16(vals.size() * 2), bf16(vals.size() * 2);
  for (size_t i = 0; i < vals.size(); ++i) {
    const uint16_t h = f32_to_fp16(vals[i]);
    const uint16_t b = f32_to_bf16(vals[i]);
    std::memcpy(&f16[2 * i], &h, 2);
    std::memcpy(&bf16[2 * i], &b, 2);
  }
  Writer w;
  ASSERT_TRUE(w.AddTensorData("h", {static_cast<int64_t>(vals.size())}, DType::F16, f16).ok());
  ASSERT_TRUE(w.AddTensorData("b", {static_cast<int64_t>(vals.size())}, DType::BF16, bf16).ok());
  auto f = WriteAndOpen(w, "half.gguf");
  ASSERT_TRUE(f);
  const TensorInfo* h = f->FindTensor("h");
  const TensorInfo* b = f->FindTensor("b");
  ASSERT_TRUE(h && b);
  for (size_t i = 0; i < vals.size(); ++i) {
    uint16_t x, y;
    std::memcpy(&x, h->data + 2 * i, 2);
    std::memcpy(&y, b->data + 2 * i, 2);
    EXPECT_EQ(fp16_to_f32(x), vals[i]) << i;  // all exactly representable in fp16
    EXPECT_EQ(bf16_to_f32(y), bf16_to_f32(f32_to_bf16(vals[i]))) << i;
  }
}

TEST(GgufWriter, RejectsInvalidTensors) {
  Writer w;
  auto fill = [](uint8_t*, uint64_t) { return Status::Ok(); };
  ASSERT_TRUE(w.AddTensor("a", {4}, DType::F32, fill).ok());
  Status dup = w.AddTensor("a", {4}, DType::F32, fill);
  EXPECT_FALSE(dup.ok());
  EXPECT_NE(dup.message().find("duplicate"), std::string::npos) << dup.message();
  EXPECT_FALSE(w.AddTensor("", {4}, DType::F32, fill).ok());
  EXPECT_FALSE(w.AddTensor(std::string(64, 'n'), {4}, DType::F32, fill).ok());
  EXPECT_TRUE(w.AddTensor(std::string(63, 'n'), {4}, DType::F32, fill).ok());
  EXPECT_FALSE(w.AddTensor("nodims", {}, DType::F32, fill).ok());
  EXPECT_FALSE(w.AddTensor("fivedims", {1, 1, 1, 1, 1}, DType::F32, fill).ok());
  EXPECT_FALSE(w.AddTensor("zero", {4, 0}, DType::F32, fill).ok());
  EXPECT_FALSE(w.AddTensor("neg", {-4}, DType::F32, fill).ok());
  Status blk = w.AddTensor("q", {33}, DType::Q8_0, fill);
  EXPECT_FALSE(blk.ok());
  EXPECT_NE(blk.message().find("block size"), std::string::npos) << blk.message();
  Status big = w.AddTensor("huge", {1ll << 32, 1ll << 32}, DType::F32, fill);
  EXPECT_FALSE(big.ok());
}

TEST(GgufWriter, FailedFillLeavesNoFile) {
  const std::string path = TempPath("failed_fill.gguf");
  Writer w;
  ASSERT_TRUE(w.AddTensorData("short", {4}, DType::F32, std::vector<uint8_t>(8)).ok());
  Status st = w.Write(path);
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.message().find("short"), std::string::npos) << st.message();
  EXPECT_NE(st.message().find("16 expected"), std::string::npos) << st.message();
  EXPECT_FALSE(Exists(path));
  EXPECT_FALSE(Exists(path + ".tmp"));

  Writer w2;
  ASSERT_TRUE(w2.AddTensor("cb", {4}, DType::F32, [](uint8_t*, uint64_t) {
                  return Status::Error("source exhausted");
                }).ok());
  st = w2.Write(path);
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.message().find("source exhausted"), std::string::npos) << st.message();
  EXPECT_FALSE(Exists(path));
  EXPECT_FALSE(Exists(path + ".tmp"));
}

TEST(GgufWriter, BadAlignmentAndPathAreErrors) {
  Writer w;
  w.SetAlignment(24);
  Status st = w.Write(TempPath("align24.gguf"));
  EXPECT_FALSE(st.ok());
  EXPECT_NE(st.message().find("alignment"), std::string::npos) << st.message();
  Writer w0;
  w0.SetAlignment(0);
  EXPECT_FALSE(w0.Write(TempPath("align0.gguf")).ok());
  Writer ok;
  st = ok.Write("/nonexistent-dir/x.gguf");
  EXPECT_FALSE(st.ok());
  EXPECT_NE(st.message().find("cannot create"), std::string::npos) << st.message();
}

TEST(GgufWriter, OutputIsDeterministic) {
  EXPECT_EQ(WriteToBytes(SmallWriter(), "det1.gguf"), WriteToBytes(SmallWriter(), "det2.gguf"));
}

// ---------------------------------------------------------------------------------------------
// Typed getters

TEST(GgufGetters, ConversionsAndErrors) {
  Writer w;
  w.SetUint8("u8", 200);
  w.SetInt32("i32.pos", 42);
  w.SetInt32("i32.neg", -5);
  w.SetUint64("u64.huge", std::numeric_limits<uint64_t>::max());
  w.SetFloat32("f32", 1.25f);
  w.SetString("s", "text");
  w.SetBool("b", true);
  w.SetFloat32Array("fa", {1, 2});
  auto f = WriteAndOpen(w, "getters.gguf");
  ASSERT_TRUE(f);

  EXPECT_EQ(f->GetUint("u8").value(), 200u);
  EXPECT_EQ(f->GetInt("u8").value(), 200);
  EXPECT_EQ(f->GetUint("i32.pos").value(), 42u);
  EXPECT_EQ(f->GetInt("i32.neg").value(), -5);
  auto neg = f->GetUint("i32.neg");
  ASSERT_FALSE(neg.ok());
  EXPECT_NE(neg.status().message().find("non-negative"), std::string::npos);
  auto huge = f->GetInt("u64.huge");
  ASSERT_FALSE(huge.ok());
  EXPECT_NE(huge.status().message().find("u64.huge"), std::string::npos);

  EXPECT_EQ(f->GetFloat("f32").value(), 1.25);
  auto fi = f->GetFloat("u8");  // integers are not floats
  ASSERT_FALSE(fi.ok());
  EXPECT_NE(fi.status().message().find("has type u8, expected a float"), std::string::npos)
      << fi.status().message();
  EXPECT_FALSE(f->GetUint("f32").ok());
  EXPECT_FALSE(f->GetUint("s").ok());
  EXPECT_FALSE(f->GetBool("u8").ok());
  EXPECT_FALSE(f->GetString("b").ok());
  EXPECT_FALSE(f->GetStringArray("fa").ok());
  EXPECT_FALSE(f->GetFloatArray("f32").ok());
  EXPECT_FALSE(f->GetIntArray("s").ok());

  auto missing = f->GetString("no.such.key");
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.status().message().find("'no.such.key' is missing"), std::string::npos)
      << missing.status().message();

  EXPECT_EQ(f->GetUintOr("absent", 77).value(), 77u);
  EXPECT_EQ(f->GetUintOr("u8", 77).value(), 200u);
  EXPECT_FALSE(f->GetUintOr("s", 77).ok());  // present with the wrong type
  EXPECT_EQ(f->GetFloatOr("absent", 0.5).value(), 0.5);
  EXPECT_EQ(f->GetFloatOr("f32", 0.5).value(), 1.25);
  EXPECT_FALSE(f->GetFloatOr("s", 0.5).ok());
}

TEST(GgufGetters, ValueToString) {
  Writer w;
  w.SetInt16("i", -7);
  w.SetUint64("u", 18446744073709551615ull);
  w.SetBool("b", false);
  w.SetFloat32("f", 0.5f);
  w.SetString("s", "a\"b\nc");
  w.SetInt32Array("ia", {1, 2, 3, 4, 5});
  w.SetStringArray("sa", {"x", "y"});
  w.SetFloat32Array("fa", {});
  auto f = WriteAndOpen(w, "tostring.gguf");
  ASSERT_TRUE(f);
  auto str = [&](const char* k, size_t max = 8) { return ValueToString(f->Find(k)->value, max); };
  EXPECT_EQ(str("i"), "-7");
  EXPECT_EQ(str("u"), "18446744073709551615");
  EXPECT_EQ(str("b"), "false");
  EXPECT_EQ(str("f"), "0.5");
  EXPECT_EQ(str("s"), "\"a\\\"b\\nc\"");
  EXPECT_EQ(str("ia"), "[i32 x 5] [1, 2, 3, 4, 5]");
  EXPECT_EQ(str("ia", 2), "[i32 x 5] [1, 2, ...]");
  EXPECT_EQ(str("sa"), "[string x 2] [\"x\", \"y\"]");
  EXPECT_EQ(str("fa"), "[f32 x 0] []");
  EXPECT_STREQ(ValueTypeName(ValueType::kFloat64), "f64");
  EXPECT_STREQ(ValueTypeName(static_cast<ValueType>(99)), "?");
}

// ---------------------------------------------------------------------------------------------
// Real vocab files (metadata-only GGUFs from llama.cpp's test suite)

TEST(GgufVocab, ReadsLlamaSpmVocab) {
  const std::string path = std::string(STRATA_TEST_DATA) + "/vocab/ggml-vocab-llama-spm.gguf";
  if (!Exists(path)) GTEST_SKIP() << "missing " << path;
  auto fr = File::Open(path);
  ASSERT_TRUE(fr.ok()) << fr.status().message();
  const File& f = *fr.value();
  EXPECT_EQ(f.version(), 3u);
  EXPECT_EQ(f.GetString("general.architecture").value(), "llama");
  EXPECT_EQ(f.GetString("tokenizer.ggml.model").value(), "llama");
  auto tokens = f.GetStringArray("tokenizer.ggml.tokens");
  ASSERT_TRUE(tokens.ok()) << tokens.status().message();
  ASSERT_EQ(tokens->size(), 32000u);
  EXPECT_EQ((*tokens)[0], "<unk>");
  EXPECT_EQ((*tokens)[1], "<s>");
  EXPECT_EQ((*tokens)[2], "</s>");
  EXPECT_EQ((*tokens)[259], "\xe2\x96\x81\xe2\x96\x81");  // "▁▁", the first merge-like piece
  auto scores = f.GetFloatArray("tokenizer.ggml.scores");
  ASSERT_TRUE(scores.ok());
  EXPECT_EQ(scores->size(), 32000u);
  auto types = f.GetIntArray("tokenizer.ggml.token_type");
  ASSERT_TRUE(types.ok());
  ASSERT_EQ(types->size(), 32000u);
  EXPECT_EQ((*types)[0], 2);  // unknown
  EXPECT_EQ((*types)[1], 3);  // control
  EXPECT_EQ((*types)[3], 6);  // byte <0x00>
  EXPECT_EQ(f.GetUint("tokenizer.ggml.bos_token_id").value(), 1u);
  EXPECT_EQ(f.GetUint("tokenizer.ggml.eos_token_id").value(), 2u);
  EXPECT_TRUE(f.tensors().empty());
  EXPECT_GT(TouchEverything(f), 0u);
}

// Copies every entry of the vocab file through the writer and checks the values survive.
TEST(GgufVocab, CopyEntryRoundTripsTheWholeVocab) {
  const std::string path = std::string(STRATA_TEST_DATA) + "/vocab/ggml-vocab-llama-spm.gguf";
  if (!Exists(path)) GTEST_SKIP() << "missing " << path;
  auto src = File::Open(path);
  ASSERT_TRUE(src.ok()) << src.status().message();
  Writer w;
  for (const MetaEntry& e : src.value()->metadata()) w.CopyEntry(e);
  auto dst = WriteAndOpen(w, "vocab_copy.gguf");
  ASSERT_TRUE(dst);
  const auto& a = src.value()->metadata();
  const auto& b = dst->metadata();
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].key, b[i].key);
    EXPECT_EQ(a[i].value.type, b[i].value.type) << a[i].key;
    EXPECT_EQ(a[i].value.elem_type, b[i].value.elem_type) << a[i].key;
    EXPECT_EQ(a[i].value.n_elems, b[i].value.n_elems) << a[i].key;
    EXPECT_EQ(a[i].value.str_elems, b[i].value.str_elems) << a[i].key;
    EXPECT_EQ(ValueToString(a[i].value, 1u << 20), ValueToString(b[i].value, 1u << 20))
        << a[i].key;
  }
}

TEST(GgufVocab, OtherVocabFilesParseWhenPresent) {
  int found = 0;
  for (const char* name : {"ggml-vocab-llama-bpe.gguf", "ggml-vocab-qwen2.gguf"}) {
    const std::string path = std::string(STRATA_TEST_DATA) + "/vocab/" + name;
    if (!Exists(path)) continue;
    ++found;
    auto f = File::Open(path);
    ASSERT_TRUE(f.ok()) << f.status().message();
    EXPECT_EQ(f.value()->GetString("tokenizer.ggml.model").value(), "gpt2") << name;
    EXPECT_GT(f.value()->GetStringArray("tokenizer.ggml.merges")->size(), 1000u) << name;
  }
  if (found == 0) GTEST_SKIP() << "no BPE vocab files in " << STRATA_TEST_DATA;
}

// ---------------------------------------------------------------------------------------------
// Hostile inputs

TEST(GgufHostile, OpenErrorsNameTheFile) {
  auto missing = File::Open("/nonexistent/model.gguf");
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.status().message().find("/nonexistent/model.gguf"), std::string::npos);

  const std::string empty = TempPath("empty.gguf");
  { std::ofstream out(empty); }
  auto e = File::Open(empty);
  std::remove(empty.c_str());
  ASSERT_FALSE(e.ok());
  EXPECT_NE(e.status().message().find("invalid GGUF file"), std::string::npos);
  EXPECT_NE(e.status().message().find("truncated"), std::string::npos) << e.status().message();

  auto dir = File::Open(testing::TempDir());
  EXPECT_FALSE(dir.ok());
}

TEST(GgufHostile, BadMagicAndVersion) {
  EXPECT_PARSE_ERROR(Raw().Put<uint32_t>(0x4c4d4747).Put<uint32_t>(3).Zeros(16), "bad magic");  // "GGML"
  EXPECT_PARSE_ERROR(Raw().Put<uint32_t>(0x47475546).Put<uint32_t>(3).Zeros(16), "bad magic");
  EXPECT_PARSE_ERROR(Raw().Header(0, 0, 1), "unsupported GGUF version 1");
  EXPECT_PARSE_ERROR(Raw().Header(0, 0, 4), "unsupported GGUF version 4");
  EXPECT_PARSE_ERROR(Raw().Header(0, 0, 0x03000000), "unsupported GGUF version");  // big endian
  EXPECT_TRUE(ParseBytes(Raw().Header(0, 0, 2).bytes()).ok());
  EXPECT_TRUE(ParseBytes(Raw().Header(0, 0, 3).bytes()).ok());
}

TEST(GgufHostile, Version2FilesAreAccepted) {
  std::vector<uint8_t> b = WriteToBytes(SmallWriter(), "v2.gguf");
  b[4] = 2;
  auto f = File::Parse(b.data(), b.size());
  ASSERT_TRUE(f.ok()) << f.status().message();
  EXPECT_EQ(f.value()->version(), 2u);
  EXPECT_EQ(f.value()->tensors().size(), 2u);
}

TEST(GgufHostile, TruncatedAtEveryOffset) {
  const std::vector<uint8_t> full = WriteToBytes(SmallWriter(), "trunc.gguf");
  auto f = File::Parse(full.data(), full.size());
  ASSERT_TRUE(f.ok()) << f.status().message();
  // The file is valid as soon as the last tensor's bytes are complete (the rest is padding).
  uint64_t needed = 0;
  for (const TensorInfo& t : f.value()->tensors())
    needed = std::max(needed, f.value()->data_offset() + t.offset + t.nbytes);
  ASSERT_LT(needed, full.size());
  for (size_t len = 0; len < full.size(); ++len) {
    Status st = ParseBytes(full.data(), len);
    if (len >= needed) {
      EXPECT_TRUE(st.ok()) << len << ": " << st.message();
      continue;
    }
    ASSERT_FALSE(st.ok()) << "prefix of " << len << " bytes parsed";
    const std::string& m = st.message();
    EXPECT_TRUE(m.find("truncated") != std::string::npos ||
                m.find("outside the file") != std::string::npos ||
                m.find("exceeds file size") != std::string::npos)
        << len << ": " << m;
  }
}

TEST(GgufHostile, HugeCounts) {
  EXPECT_PARSE_ERROR(Raw().Header(0, 1ull << 62).Zeros(64), "metadata count");
  EXPECT_PARSE_ERROR(Raw().Header(0, ~0ull).Zeros(64), "exceeds file size");
  EXPECT_PARSE_ERROR(Raw().Header(1ull << 60, 0).Zeros(64), "tensor count");
  EXPECT_PARSE_ERROR(Raw().Header(~0ull, 0).Zeros(64), "exceeds file size");
}

TEST(GgufHostile, HugeStringLengths) {
  // Key length beyond the sanity limit.
  EXPECT_PARSE_ERROR(Raw().Header(0, 1).Put<uint64_t>(~0ull).Zeros(16), "too large");
  // Plausible length but past the end of the file.
  EXPECT_PARSE_ERROR(Raw().Header(0, 1).Put<uint64_t>(1000).Zeros(16), "truncated");
  // String value with a huge length.
  EXPECT_PARSE_ERROR(Raw().Header(0, 1).Str("k").Put<uint32_t>(8).Put<uint64_t>(1ull << 40),
                     "too large");
  // Tensor name with a huge length.
  EXPECT_PARSE_ERROR(Raw().Header(1, 0).Put<uint64_t>(1ull << 63).Zeros(40), "too large");
  // Tensor name too long for ggml.
  EXPECT_PARSE_ERROR(Raw().Header(1, 0).TensorInfo(std::string(64, 'x'), {4}, 0, 0).PadTo(32)
                         .Zeros(16), "longer than 63");
}

TEST(GgufHostile, HugeArrayLengths) {
  auto arr = [](ValueType et, uint64_t n) {
    Raw r;
    r.Header(0, 1).Str("a").Put<uint32_t>(9).Put<uint32_t>(static_cast<uint32_t>(et)).Put(n);
    return r.Zeros(64);
  };
  EXPECT_PARSE_ERROR(arr(ValueType::kUint8, 1ull << 62), "array length exceeds file size");
  EXPECT_PARSE_ERROR(arr(ValueType::kUint64, ~0ull), "array length exceeds file size");
  EXPECT_PARSE_ERROR(arr(ValueType::kUint64, 9), "array length exceeds file size");  // 72 > 64
  EXPECT_PARSE_ERROR(arr(ValueType::kString, ~0ull), "array length exceeds file size");
  EXPECT_PARSE_ERROR(arr(ValueType::kString, 9), "array length exceeds file size");
  EXPECT_TRUE(ParseBytes(arr(ValueType::kString, 8).bytes()).ok());  // 8 empty strings fit
  EXPECT_PARSE_ERROR(Raw().Header(0, 1).Str("a").Put<uint32_t>(9).Put<uint32_t>(8).Put<uint64_t>(2)
                         .Str("ok").Put<uint64_t>(100).Zeros(50),
                     "truncated");
  EXPECT_TRUE(ParseBytes(arr(ValueType::kUint64, 8).bytes()).ok());
}

// A sparse multi-GB file passes the "fits in the file" checks with huge counts: it must fail
// with a message (the absolute caps), never reserve memory for the counts (bad_alloc).
TEST(GgufHostile, SparseFileWithHugeCounts) {
  const std::string path = TempPath("sparse.gguf");
  const uint64_t size = 16ull << 30;
  auto write = [&](const Raw& r) {
    {
      std::ofstream out(path, std::ios::binary | std::ios::trunc);
      out.write(reinterpret_cast<const char*>(r.bytes().data()),
                static_cast<std::streamsize>(r.bytes().size()));
    }
    ASSERT_EQ(::truncate(path.c_str(), static_cast<off_t>(size)), 0);
  };
  struct Case {
    Raw raw;
    const char* error;
  };
  Raw strings;
  strings.Header(0, 1).Str("a").Put<uint32_t>(9).Put<uint32_t>(8).Put<uint64_t>(1ull << 30);
  Raw kvs;
  kvs.Header(0, 1ull << 30);
  Raw tensors;
  tensors.Header(1ull << 28, 0);
  for (const Case& c : {Case{strings, "strings exceeds the limit"},
                        Case{kvs, "metadata count"}, Case{tensors, "tensor count"}}) {
    write(c.raw);
    auto f = File::Open(path);
    ASSERT_FALSE(f.ok()) << c.error;
    EXPECT_NE(f.status().message().find(c.error), std::string::npos) << f.status().message();
  }
  std::remove(path.c_str());
}

TEST(GgufHostile, UnknownValueTypes) {
  EXPECT_PARSE_ERROR(Raw().Header(0, 1).Str("k").Put<uint32_t>(13).Zeros(8),
                     "unknown value type 13");
  EXPECT_PARSE_ERROR(Raw().Header(0, 1).Str("k").Put<uint32_t>(0xffffffffu).Zeros(8),
                     "unknown value type");
  EXPECT_PARSE_ERROR(Raw().Header(0, 1).Str("k").Put<uint32_t>(9).Put<uint32_t>(9).Zeros(16),
                     "invalid array element type 9");  // nested arrays
  EXPECT_PARSE_ERROR(Raw().Header(0, 1).Str("k").Put<uint32_t>(9).Put<uint32_t>(42).Zeros(16),
                     "invalid array element type 42");
}

TEST(GgufHostile, InvalidBool) {
  EXPECT_PARSE_ERROR(Raw().Header(0, 1).Str("b").Put<uint32_t>(7).Put<uint8_t>(2),
                     "invalid bool");
  EXPECT_PARSE_ERROR(
      Raw().Header(0, 1).Str("b").Put<uint32_t>(9).Put<uint32_t>(7).Put<uint64_t>(3)
          .Put<uint8_t>(1).Put<uint8_t>(0).Put<uint8_t>(255),
      "invalid bool");
}

TEST(GgufHostile, DuplicateKeysAndTensorNames) {
  EXPECT_PARSE_ERROR(Raw().Header(0, 2).KvU32("k", 1).KvU32("k", 2), "duplicate metadata key 'k'");
  EXPECT_PARSE_ERROR(Raw().Header(2, 0).TensorInfo("t", {4}, 0, 0).TensorInfo("t", {4}, 0, 32)
                         .PadTo(32).Zeros(64),
                     "duplicate tensor 't'");
}

TEST(GgufHostile, BadAlignment) {
  auto with_align = [](uint32_t a) {
    return Raw().Header(1, 1).KvU32("general.alignment", a).TensorInfo("t", {4}, 0, 0)
        .PadTo(64).Zeros(64);
  };
  EXPECT_PARSE_ERROR(with_align(0), "general.alignment 0 is not a power of two");
  EXPECT_PARSE_ERROR(with_align(3), "general.alignment 3 is not a power of two");
  EXPECT_PARSE_ERROR(with_align(48), "not a power of two");
  EXPECT_PARSE_ERROR(with_align(1u << 21), "not a power of two");
  EXPECT_TRUE(ParseBytes(with_align(64).bytes()).ok());
  EXPECT_TRUE(ParseBytes(with_align(1).bytes()).ok());
  EXPECT_PARSE_ERROR(Raw().Header(0, 1).Str("general.alignment").Put<uint32_t>(8).Str("32"),
                     "general.alignment must be an integer");
  EXPECT_PARSE_ERROR(Raw().Header(0, 1).Str("general.alignment").Put<uint32_t>(5)
                         .Put<int32_t>(-32),
                     "not a power of two");
}

TEST(GgufHostile, BadTensorInfos) {
  auto one = [](std::vector<uint64_t> dims, uint32_t type, uint64_t offset, size_t data = 256) {
    return Raw().Header(1, 0).TensorInfo("w", std::move(dims), type, offset).PadTo(32)
        .Zeros(data);
  };
  EXPECT_TRUE(ParseBytes(one({4, 4}, 0, 0).bytes()).ok());
  EXPECT_PARSE_ERROR(one({4}, 31, 0), "unknown type id 31");
  EXPECT_PARSE_ERROR(one({4}, 1000, 0), "unknown type id 1000");
  EXPECT_PARSE_ERROR(one({4, 0}, 0, 0), "invalid dimension 0");
  EXPECT_PARSE_ERROR(one({1ull << 63}, 0, 0), "invalid dimension");
  EXPECT_PARSE_ERROR(one({1ull << 32, 1ull << 32}, 0, 0), "element count overflows");
  EXPECT_PARSE_ERROR(one({1ull << 62, 2, 2}, 0, 0), "element count overflows");
  EXPECT_PARSE_ERROR(one({1ull << 40, 1ull << 20}, 0, 0), "outside the file");  // 2^60 elems
  EXPECT_PARSE_ERROR(one({1, 1, 1, 1, 1}, 0, 0), "5 dimensions");
  EXPECT_PARSE_ERROR(one({}, 0, 0), "0 dimensions");
  EXPECT_PARSE_ERROR(one({16}, 8, 0), "not a multiple of the Q8_0 block size");
  EXPECT_PARSE_ERROR(one({4}, 0, 4), "offset 4 is not aligned to 32");
  EXPECT_PARSE_ERROR(one({64}, 0, 32), "lies outside the file");        // 32 + 256 > 256
  EXPECT_PARSE_ERROR(one({4}, 0, 1ull << 63), "lies outside the file");  // offset past the end
  EXPECT_PARSE_ERROR(Raw().Header(1, 0).TensorInfo("w", {4}, 0, 0),  // ends before the padding
                     "truncated file: no tensor data section");
  EXPECT_PARSE_ERROR(one({4}, 0, 0, 0), "lies outside the file");
  // Huge n_dims must not be used to size anything.
  EXPECT_PARSE_ERROR(Raw().Header(1, 0).Str("w").Put<uint32_t>(0xffffffffu).Zeros(64),
                     "dimensions (1..4 allowed)");
}

TEST(GgufHostile, MisalignedOffsetWithCustomAlignment) {
  auto r = Raw().Header(1, 1).KvU32("general.alignment", 64).TensorInfo("t", {4}, 0, 32)
               .PadTo(64).Zeros(128);
  EXPECT_PARSE_ERROR(r, "offset 32 is not aligned to 64");
}

TEST(GgufHostile, OverlappingTensors) {
  // a covers [0, 64), b starts at 32.
  auto r = Raw().Header(2, 0).TensorInfo("a", {16}, 0, 0).TensorInfo("b", {8}, 0, 32)
               .PadTo(32).Zeros(128);
  EXPECT_PARSE_ERROR(r, "overlap");
  // Same offset, listed out of order.
  auto r2 = Raw().Header(3, 0).TensorInfo("c", {8}, 0, 64).TensorInfo("a", {8}, 0, 0)
                .TensorInfo("b", {8}, 0, 64).PadTo(32).Zeros(128);
  EXPECT_PARSE_ERROR(r2, "overlap");
  // Adjacent tensors in any order are fine.
  auto ok = Raw().Header(2, 0).TensorInfo("b", {8}, 0, 32).TensorInfo("a", {8}, 0, 0)
                .PadTo(32).Zeros(64);
  EXPECT_TRUE(ParseBytes(ok.bytes()).ok());
}

// Random mutations of a valid file: each must parse or fail cleanly, never crash. Parsed files
// are fully touched so that out-of-range views show up under ASan.
TEST(GgufHostile, RandomMutationsNeverCrash) {
  const std::vector<uint8_t> base = WriteToBytes(SmallWriter(), "mutate.gguf");
  ASSERT_TRUE(ParseBytes(base).ok());
  std::mt19937_64 rng(0x5eed);
  int parsed = 0, rejected = 0;
  uint64_t sink = 0;
  for (int iter = 0; iter < 4000; ++iter) {
    std::vector<uint8_t> b = base;
    const int n_mut = 1 + static_cast<int>(rng() % 4);
    for (int m = 0; m < n_mut; ++m) {
      const size_t pos = rng() % b.size();
      switch (rng() % 5) {
        case 0: b[pos] ^= static_cast<uint8_t>(1u << (rng() % 8)); break;  // bit flip
        case 1: b[pos] = static_cast<uint8_t>(rng()); break;                // random byte
        case 2: b[pos] = 0xff; break;
        case 3: b[pos] = 0; break;
        case 4: {  // overwrite an 8-byte word with an interesting value
          static const uint64_t kVals[] = {0, 1, 0x7fffffffffffffffull, ~0ull, 1ull << 32, 31};
          const uint64_t v = kVals[rng() % 6];
          const size_t at = std::min(pos, b.size() - 8);
          std::memcpy(&b[at], &v, 8);
          break;
        }
      }
    }
    if (rng() % 8 == 0) b.resize(rng() % b.size());  // sometimes truncate too
    std::vector<uint8_t> exact(b);                    // exact-size heap block for ASan
    auto f = File::Parse(exact.empty() ? nullptr : exact.data(), exact.size());
    if (f.ok()) {
      ++parsed;
      sink += TouchEverything(*f.value());
    } else {
      ++rejected;
      EXPECT_FALSE(f.status().message().empty());
      EXPECT_EQ(f.status().message().rfind("invalid GGUF data: ", 0), 0u) << f.status().message();
    }
  }
  EXPECT_GT(parsed, 0);
  EXPECT_GT(rejected, 0);
  RecordProperty("parsed", parsed);
  RecordProperty("sink", static_cast<int>(sink & 0xffff));
}

}  // namespace
}  // namespace strata::gguf
