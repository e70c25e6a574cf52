// GGUF reader tests with hostile inputs: every malformed-file case must give a clear error,
// never a crash (run under ASan/UBSan to get the most out of the mutation test).
#include "gguf/gguf_test_util.h"

namespace strata::gguf {
namespace {

using namespace test_util;

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
  EXPECT_PARSE_ERROR(Raw().Put<uint32_t>(0x4c4d4747).Put<uint32_t>(3).Zeros(16),
                     "bad magic");  // "GGML"
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
  EXPECT_PARSE_ERROR(
      Raw().Header(1, 0).TensorInfo(std::string(64, 'x'), {4}, 0, 0).PadTo(32).Zeros(16),
      "longer than 63");
}

TEST(GgufHostile, HugeArrayLengths) {
  auto arr = [](ValueType et, uint64_t n) {
    Raw r;
    r.Header(0, 1).ArrayKv("a", et, n);
    return r.Zeros(64);
  };
  EXPECT_PARSE_ERROR(arr(ValueType::kUint8, 1ull << 62), "array length exceeds file size");
  EXPECT_PARSE_ERROR(arr(ValueType::kUint64, ~0ull), "array length exceeds file size");
  EXPECT_PARSE_ERROR(arr(ValueType::kUint64, 9), "array length exceeds file size");  // 72 > 64
  EXPECT_PARSE_ERROR(arr(ValueType::kString, ~0ull), "array length exceeds file size");
  EXPECT_PARSE_ERROR(arr(ValueType::kString, 9), "array length exceeds file size");
  EXPECT_TRUE(ParseBytes(arr(ValueType::kString, 8).bytes()).ok());  // 8 empty strings fit
  EXPECT_PARSE_ERROR(
      Raw().Header(0, 1).ArrayKv("a", ValueType::kString, 2).Str("ok").Put<uint64_t>(100).Zeros(50),
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
  strings.Header(0, 1).ArrayKv("a", ValueType::kString, 1ull << 30);
  Raw kvs;
  kvs.Header(0, 1ull << 30);
  Raw tensors;
  tensors.Header(1ull << 28, 0);
  for (const Case& c : {Case{strings, "strings exceeds the limit"}, Case{kvs, "metadata count"},
                        Case{tensors, "tensor count"}}) {
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
  EXPECT_PARSE_ERROR(Raw().Header(0, 1).ArrayKv("k", 42, 0).Zeros(8),
                     "invalid array element type 42");
}

TEST(GgufHostile, InvalidBool) {
  EXPECT_PARSE_ERROR(Raw().Header(0, 1).Str("b").Put<uint32_t>(7).Put<uint8_t>(2), "invalid bool");
  EXPECT_PARSE_ERROR(Raw()
                         .Header(0, 1)
                         .ArrayKv("b", ValueType::kBool, 3)
                         .Put<uint8_t>(1)
                         .Put<uint8_t>(0)
                         .Put<uint8_t>(255),
                     "invalid bool");
}

TEST(GgufHostile, DuplicateKeysAndTensorNames) {
  EXPECT_PARSE_ERROR(Raw().Header(0, 2).KvU32("k", 1).KvU32("k", 2), "duplicate metadata key 'k'");
  EXPECT_PARSE_ERROR(
      Raw().Header(2, 0).TensorInfo("t", {4}, 0, 0).TensorInfo("t", {4}, 0, 32).PadTo(32).Zeros(64),
      "duplicate tensor 't'");
}

TEST(GgufHostile, BadAlignment) {
  auto with_align = [](uint32_t a) {
    return Raw()
        .Header(1, 1)
        .KvU32("general.alignment", a)
        .TensorInfo("t", {4}, 0, 0)
        .PadTo(64)
        .Zeros(64);
  };
  EXPECT_PARSE_ERROR(with_align(0), "general.alignment 0 is not a power of two");
  EXPECT_PARSE_ERROR(with_align(3), "general.alignment 3 is not a power of two");
  EXPECT_PARSE_ERROR(with_align(48), "not a power of two");
  EXPECT_PARSE_ERROR(with_align(1u << 21), "not a power of two");
  EXPECT_TRUE(ParseBytes(with_align(64).bytes()).ok());
  EXPECT_TRUE(ParseBytes(with_align(1).bytes()).ok());
  EXPECT_PARSE_ERROR(Raw().Header(0, 1).Str("general.alignment").Put<uint32_t>(8).Str("32"),
                     "general.alignment must be an integer");
  EXPECT_PARSE_ERROR(Raw().Header(0, 1).Str("general.alignment").Put<uint32_t>(5).Put<int32_t>(-32),
                     "not a power of two");
}

TEST(GgufHostile, BadTensorInfos) {
  auto one = [](const std::vector<uint64_t>& dims, uint32_t type, uint64_t offset,
                size_t data = 256) {
    return Raw().Header(1, 0).TensorInfo("w", dims, type, offset).PadTo(32).Zeros(data);
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
  EXPECT_PARSE_ERROR(one({64}, 0, 32), "lies outside the file");         // 32 + 256 > 256
  EXPECT_PARSE_ERROR(one({4}, 0, 1ull << 63), "lies outside the file");  // offset past the end
  EXPECT_PARSE_ERROR(Raw().Header(1, 0).TensorInfo("w", {4}, 0, 0),      // ends before the padding
                     "truncated file: no tensor data section");
  EXPECT_PARSE_ERROR(one({4}, 0, 0, 0), "lies outside the file");
  // Huge n_dims must not be used to size anything.
  EXPECT_PARSE_ERROR(Raw().Header(1, 0).Str("w").Put<uint32_t>(0xffffffffu).Zeros(64),
                     "dimensions (1..4 allowed)");
}

TEST(GgufHostile, MisalignedOffsetWithCustomAlignment) {
  auto r = Raw()
               .Header(1, 1)
               .KvU32("general.alignment", 64)
               .TensorInfo("t", {4}, 0, 32)
               .PadTo(64)
               .Zeros(128);
  EXPECT_PARSE_ERROR(r, "offset 32 is not aligned to 64");
}

TEST(GgufHostile, OverlappingTensors) {
  // a covers [0, 64), b starts at 32.
  auto r = Raw()
               .Header(2, 0)
               .TensorInfo("a", {16}, 0, 0)
               .TensorInfo("b", {8}, 0, 32)
               .PadTo(32)
               .Zeros(128);
  EXPECT_PARSE_ERROR(r, "overlap");
  // Same offset, listed out of order.
  auto r2 = Raw()
                .Header(3, 0)
                .TensorInfo("c", {8}, 0, 64)
                .TensorInfo("a", {8}, 0, 0)
                .TensorInfo("b", {8}, 0, 64)
                .PadTo(32)
                .Zeros(128);
  EXPECT_PARSE_ERROR(r2, "overlap");
  // Adjacent tensors in any order are fine.
  auto ok =
      Raw().Header(2, 0).TensorInfo("b", {8}, 0, 32).TensorInfo("a", {8}, 0, 0).PadTo(32).Zeros(64);
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
        case 1: b[pos] = static_cast<uint8_t>(rng()); break;               // random byte
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
    std::vector<uint8_t> exact(b);                   // exact-size heap block for ASan
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
