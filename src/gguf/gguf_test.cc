// GGUF reader/writer tests: round trips of every metadata type and of tensors, typed getters,
// and the real vocab files (hostile inputs: gguf_hostile_test.cc).
#include "gguf/gguf_test_util.h"

namespace strata::gguf {
namespace {

using namespace test_util;

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
  const std::string non_ascii =
      "h\xc3\xa9llo \xe2\x9c\x93 \xe6\x97\xa5\xe6\x9c\xac \xf0\x9f\x98\x80";
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
  EXPECT_EQ(f->GetFloatArray("arr.f64").value(),
            (std::vector<float>{static_cast<float>(1e-300), 2.5f}));
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
  const std::pair<const char*, const char*> kWant[] = {{"i", "-7"},
                                                       {"u", "18446744073709551615"},
                                                       {"b", "false"},
                                                       {"f", "0.5"},
                                                       {"s", "\"a\\\"b\\nc\""},
                                                       {"ia", "[i32 x 5] [1, 2, 3, 4, 5]"},
                                                       {"sa", "[string x 2] [\"x\", \"y\"]"},
                                                       {"fa", "[f32 x 0] []"}};
  for (const auto& [key, want] : kWant) EXPECT_EQ(str(key), want) << key;
  EXPECT_EQ(str("ia", 2), "[i32 x 5] [1, 2, ...]");
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
    EXPECT_EQ(ValueToString(a[i].value, 1u << 20), ValueToString(b[i].value, 1u << 20)) << a[i].key;
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
}  // namespace
}  // namespace strata::gguf
