// Split-KV attention (kernels::AttentionKvPartial + MergeAttentionPartials, as the model runs
// it for rows with long contexts): on every path this CPU supports, for each KV cache type pair
// (F16 included), against double-precision softmax attention over the dequantized cache, over
// context sizes that cross the chunk boundaries (1 .. 20,000 positions), 1 and 6 query heads
// per KV head, and rows off every alignment but the 2 bytes a cache row always has (blocks of
// Q8_0 / Q4_0 are 34 / 18 bytes; the dot kernels read their f16 scales in place). The chunk count and the merge order depend only on n_kv, so
// the result is the same whichever thread runs which chunk (the forward tests check that end to
// end); here a single chunk also merges to exactly acc / sum.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "kernels/kernels.h"
#include "kernels/kernels_impl.h"
#include "kernels/kv_test_util.h"

namespace strata::kernels {
namespace {

using kvtest::RandomNormal;

// A KV head of n_kv positions of types kt / vt, rows `pad` bytes longer than needed, starting
// `offset` bytes into the buffers; plus its dequantized rows.
struct Head {
  int hd;
  int64_t n_kv;
  size_t k_row, v_row;
  std::vector<uint8_t> k, v;
  std::vector<float> kf, vf;  // [n_kv, hd] dequantized
  size_t offset;
  Head(DType kt, DType vt, int hd_, int64_t n_kv_, size_t pad, size_t offset_, uint32_t seed)
      : hd(hd_), n_kv(n_kv_), offset(offset_) {
    k_row = RowBytesUnchecked(kt, hd) + pad;
    v_row = RowBytesUnchecked(vt, hd) + pad;
    k.assign(offset + k_row * n_kv, 0);
    v.assign(offset + v_row * n_kv, 0);
    kf.assign(static_cast<size_t>(n_kv * hd), 0.0f);
    vf.assign(static_cast<size_t>(n_kv * hd), 0.0f);
    const std::vector<float> x = RandomNormal(static_cast<size_t>(2 * n_kv * hd), seed);
    for (int64_t j = 0; j < n_kv; ++j) {
      uint8_t* kr = k.data() + offset + j * k_row;
      uint8_t* vr = v.data() + offset + j * v_row;
      ref::QuantizeKvRow(kt, x.data() + 2 * j * hd, kr, hd);
      ref::QuantizeKvRow(vt, x.data() + (2 * j + 1) * hd, vr, hd);
      internal::AccumulateKvRow(kt, kr, 1.0f, kf.data() + j * hd, hd);  // 0 + 1 * x: exact
      internal::AccumulateKvRow(vt, vr, 1.0f, vf.data() + j * hd, hd);
    }
    a.k = k.data() + offset;
    a.k_type = kt;
    a.k_row_bytes = k_row;
    a.v = v.data() + offset;
    a.v_type = vt;
    a.v_row_bytes = v_row;
    a.n_kv = n_kv;
    a.head_dim = hd;
    a.scale = 1.0f / std::sqrt(static_cast<float>(hd));
  }
  KvAttention a;
};

// The model's use: chunks of kSplitKvChunk from position 0, then the merge.
std::vector<float> Split(const Head& c, int n_heads, const std::vector<float>& q) {
  const int64_t n_chunks = SplitKvChunks(c.n_kv), stride = AttentionPartialStride(c.hd);
  std::vector<float> partials(static_cast<size_t>(n_chunks * n_heads * stride));
  std::vector<float> scratch(static_cast<size_t>(n_heads * kSplitKvChunk));
  for (int64_t ch = 0; ch < n_chunks; ++ch) {
    KvAttention a = c.a;
    const int64_t j0 = ch * kSplitKvChunk;
    a.k = static_cast<const uint8_t*>(c.a.k) + j0 * c.k_row;
    a.v = static_cast<const uint8_t*>(c.a.v) + j0 * c.v_row;
    a.n_kv = std::min(kSplitKvChunk, c.n_kv - j0);
    a.n_heads = n_heads;
    AttentionKvPartial(a, q.data(), partials.data() + ch * n_heads * stride, scratch.data());
  }
  std::vector<float> out(q.size());
  MergeAttentionPartials(partials.data(), n_chunks, n_heads, c.hd, out.data());
  return out;
}

// Softmax attention in double over the dequantized rows; the query as the key type's dot
// product sees it (rounded to f16 for F16 keys, quantized to Q8_0 for the block types).
std::vector<double> Want(const Head& c, DType kt, int n_heads, const std::vector<float>& q) {
  const internal::TypeKernels* tk = internal::FindType(internal::ScalarKernels(), kt);
  std::vector<double> out(q.size());
  std::vector<double> s(static_cast<size_t>(c.n_kv));
  for (int h = 0; h < n_heads; ++h) {
    std::vector<float> qh(q.begin() + h * c.hd, q.begin() + (h + 1) * c.hd);
    if (tk->quantize != nullptr) {
      std::vector<uint8_t> qx(4 * static_cast<size_t>(c.hd));
      tk->quantize(qh.data(), qx.data(), c.hd);
      std::vector<float> back(qh.size(), 0.0f);
      internal::AccumulateKvRow(tk->vec_dot_type, qx.data(), 1.0f, back.data(), c.hd);
      qh = back;
    }
    double m = -INFINITY, sum = 0;
    for (int64_t j = 0; j < c.n_kv; ++j) {
      double d = 0;
      for (int i = 0; i < c.hd; ++i) d += double{c.kf[j * c.hd + i]} * qh[static_cast<size_t>(i)];
      s[static_cast<size_t>(j)] = d * c.a.scale;
      m = std::max(m, s[static_cast<size_t>(j)]);
    }
    double* o = out.data() + h * c.hd;
    for (int64_t j = 0; j < c.n_kv; ++j) {
      const double w = std::exp(s[static_cast<size_t>(j)] - m);
      sum += w;
      for (int i = 0; i < c.hd; ++i) o[i] += w * c.vf[j * c.hd + i];
    }
    for (int i = 0; i < c.hd; ++i) o[i] /= sum;
  }
  return out;
}

const std::vector<std::pair<DType, DType>>& SplitTypePairs() {
  static const std::vector<std::pair<DType, DType>> p = {{DType::F16, DType::F16},
                                                         {DType::Q8_0, DType::Q8_0},
                                                         {DType::Q4_0, DType::Q4_0},
                                                         {DType::Q8_0, DType::F16},
                                                         {DType::F16, DType::Q8_0}};
  return p;
}

class SplitKvTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override { ASSERT_TRUE(SetPathForTesting(GetParam().c_str())); }
  void TearDown() override { SetPathForTesting(SupportedPaths().front().c_str()); }
};

TEST_P(SplitKvTest, MatchesDoublePrecisionAcrossChunkBoundaries) {
  struct Case {
    int hd, n_heads;
    int64_t n_kv;
    size_t offset;
  };
  const std::vector<Case> cases = {{128, 6, 1, 0},    {128, 6, 255, 1},  {128, 6, 256, 0},
                                   {128, 6, 257, 3},  {64, 1, 511, 1},   {64, 7, 512, 0},
                                   {32, 2, 513, 1},   {128, 1, 1000, 2}, {64, 16, 769, 1},
                                   {128, 6, 4097, 1}, {96, 4, 300, 1},   {128, 6, 20000, 1}};
  for (const auto& [kt, vt] : SplitTypePairs()) {
    for (const Case& cs : cases) {
      if (cs.n_kv == 20000 && kt != vt) continue;  // the longest once per type
      Head c(kt, vt, cs.hd, cs.n_kv, cs.offset * 2, cs.offset * 2,
             static_cast<uint32_t>(cs.n_kv * 3 + cs.hd));
      const std::vector<float> q = RandomNormal(static_cast<size_t>(cs.hd) * cs.n_heads, 11);
      const std::vector<float> got = Split(c, cs.n_heads, q);
      const std::vector<double> want = Want(c, kt, cs.n_heads, q);
      for (size_t i = 0; i < q.size(); ++i)
        ASSERT_NEAR(got[i], want[i], 2e-5 * (1 + std::fabs(want[i])))
            << GetParam() << " " << DTypeName(kt) << "/" << DTypeName(vt) << " hd " << cs.hd
            << " heads " << cs.n_heads << " n_kv " << cs.n_kv << " offset " << cs.offset << " i "
            << i;
    }
  }
}

// The dispatched chunk against the scalar twin: same maximum and sum up to the dot products'
// order, values within float rounding.
TEST_P(SplitKvTest, ChunkMatchesScalarTwin) {
  for (const auto& [kt, vt] : SplitTypePairs()) {
    for (int64_t n_kv : {1, 17, 256}) {
      const int hd = 128, nh = 6;
      Head c(kt, vt, hd, n_kv, 2, 2, static_cast<uint32_t>(n_kv));
      c.a.n_heads = nh;
      const std::vector<float> q = RandomNormal(static_cast<size_t>(hd) * nh, 5);
      const int64_t stride = AttentionPartialStride(hd);
      std::vector<float> a(static_cast<size_t>(nh * stride)), b(a.size());
      std::vector<float> scratch(static_cast<size_t>(nh * kSplitKvChunk));
      ref::AttentionKvPartial(c.a, q.data(), a.data(), scratch.data());
      AttentionKvPartial(c.a, q.data(), b.data(), scratch.data());
      for (int h = 0; h < nh; ++h)
        for (int64_t i = 0; i < hd + 2; ++i)
          ASSERT_NEAR(b[h * stride + i], a[h * stride + i],
                      1e-5 * (1 + std::fabs(a[h * stride + i])))
              << GetParam() << " " << DTypeName(kt) << "/" << DTypeName(vt) << " n_kv " << n_kv
              << " h " << h << " i " << i;
    }
  }
}

// The AVX-512 Q8_0 key scores against their plain twin, bit for bit: 1 to 16 heads, key
// counts around the 16-key step, rows off every even alignment, a 64-dim head (2 blocks).
TEST(SplitKv, Avx512Q8ScoresAreTheRefScores) {
  const std::vector<std::string> paths = SupportedPaths();
  if (std::find(paths.begin(), paths.end(), "avx512") == paths.end())
    GTEST_SKIP() << "no AVX-512 on this CPU";
  for (int hd : {64, 128}) {
    for (int nh : {1, 5, 6, 16}) {
      for (int64_t n_kv : {1, 15, 16, 17, 100, 256}) {
        Head c(DType::Q8_0, DType::Q8_0, hd, n_kv, 2 * (nh % 3), 2 * (n_kv % 5),
               static_cast<uint32_t>(n_kv * 31 + nh));
        const int nb = hd / 32;
        const std::vector<float> q = RandomNormal(static_cast<size_t>(hd) * nh, 9);
        std::vector<BlockQ8_0> qx(static_cast<size_t>(nh * nb));
        for (int h = 0; h < nh; ++h)
          ref::QuantizeActivationRow(DType::Q8_0, q.data() + h * hd, qx.data() + h * nb, hd);
        std::vector<float> want(static_cast<size_t>(nh * kSplitKvChunk), -1.0f), got(want);
        const auto* k = static_cast<const uint8_t*>(c.a.k);
        ref::SplitScoresQ8(qx.data(), nh, nb, k, c.k_row, n_kv, c.a.scale, want.data());
        avx512::SplitScoresQ8(qx.data(), nh, nb, k, c.k_row, n_kv, c.a.scale, got.data());
        for (int h = 0; h < nh; ++h)
          for (int64_t j = 0; j < kSplitKvChunk; ++j)  // and nothing written past n_kv
            ASSERT_EQ(got[h * kSplitKvChunk + j], want[h * kSplitKvChunk + j])
                << "hd " << hd << " heads " << nh << " n_kv " << n_kv << " h " << h << " j " << j;
      }
    }
  }
}

// The AVX-512 chunk kernel for Q8_0 keys and values against the generic chunk on the same
// path, whose scores are the Q8_0 dot product's (another order of the same float terms): the
// maxima, weight sums and weighted values agree to float rounding.
TEST(SplitKv, Avx512Q8ChunkAgreesWithTheGenericChunk) {
  const std::vector<std::string> paths = SupportedPaths();
  if (std::find(paths.begin(), paths.end(), "avx512") == paths.end())
    GTEST_SKIP() << "no AVX-512 on this CPU";
  ASSERT_TRUE(SetPathForTesting("avx512"));
  for (int nh : {1, 5, 6}) {
    for (int64_t n_kv : {1, 31, 256}) {
      const int hd = 128;
      Head c(DType::Q8_0, DType::Q8_0, hd, n_kv, 2, 2, static_cast<uint32_t>(n_kv + nh));
      c.a.n_heads = nh;
      const std::vector<float> q = RandomNormal(static_cast<size_t>(hd) * nh, 9);
      const int64_t stride = AttentionPartialStride(hd);
      std::vector<float> table(static_cast<size_t>(nh * stride)), fast(table.size());
      std::vector<float> scratch(static_cast<size_t>(nh * kSplitKvChunk));
      internal::AttentionKvPartialWith(internal::Avx512Kernels(), internal::AccumulateKvRowAvx2,
                                       c.a, q.data(), table.data(), scratch.data());
      AttentionKvPartial(c.a, q.data(), fast.data(), scratch.data());
      for (int h = 0; h < nh; ++h) {
        const float* f = fast.data() + h * stride;
        const float* t = table.data() + h * stride;
        EXPECT_NEAR(f[hd], t[hd], 1e-5f * (1.0f + std::fabs(t[hd]))) << "max, heads " << nh;
        EXPECT_NEAR(f[hd + 1], t[hd + 1], 1e-4f * t[hd + 1]) << "sum, heads " << nh;
        for (int i = 0; i < hd; ++i)
          ASSERT_NEAR(f[i], t[i], 1e-4f * (1.0f + std::fabs(t[i]))) << "heads " << nh << " h " << h;
      }
    }
  }
  SetPathForTesting(paths.front().c_str());
}

// The AVX-512 merge against its plain twin, bit for bit: head sizes off the 16-lane step,
// 1 to 70 chunks, maxima far apart (weights that underflow to 0) and a chunk with sum 0.
TEST(SplitKv, Avx512MergeIsTheRefMerge) {
  const std::vector<std::string> paths = SupportedPaths();
  if (std::find(paths.begin(), paths.end(), "avx512") == paths.end())
    GTEST_SKIP() << "no AVX-512 on this CPU";
  ASSERT_TRUE(SetPathForTesting("avx512"));
  for (int hd : {8, 64, 80, 100, 128}) {
    for (int nh : {1, 6}) {
      for (int64_t n_chunks : {1, 2, 17, 70}) {
        const int64_t stride = AttentionPartialStride(hd);
        std::vector<float> p = RandomNormal(static_cast<size_t>(n_chunks * nh * stride),
                                            static_cast<uint32_t>(hd * 100 + n_chunks));
        for (int64_t r = 0; r < n_chunks * nh; ++r) {
          p[r * stride + hd] = 30.0f * p[r * stride + hd + 1];  // maxima spread out
          p[r * stride + hd + 1] = r % 5 == 4 ? 0.0f : 1.0f + std::fabs(p[r * stride]);
        }
        std::vector<float> ref(static_cast<size_t>(nh * hd)), fast(ref.size());
        internal::MergeAttentionPartialsRef(p.data(), n_chunks, nh, hd, ref.data());
        MergeAttentionPartials(p.data(), n_chunks, nh, hd, fast.data());
        for (size_t i = 0; i < ref.size(); ++i)
          ASSERT_EQ(fast[i], ref[i]) << "hd " << hd << " heads " << nh << " chunks " << n_chunks;
      }
    }
  }
  SetPathForTesting(paths.front().c_str());
}

TEST(SplitKv, OneChunkMergesToAccOverSum) {
  const int hd = 32, nh = 2;
  const int64_t stride = AttentionPartialStride(hd);
  std::vector<float> p = RandomNormal(static_cast<size_t>(nh * stride), 3);
  p[hd] = 0.7f;
  p[hd + 1] = 3.0f;
  p[stride + hd] = -2.0f;
  p[stride + hd + 1] = 0.5f;
  std::vector<float> out(static_cast<size_t>(nh * hd));
  MergeAttentionPartials(p.data(), 1, nh, hd, out.data());
  for (int h = 0; h < nh; ++h)
    for (int i = 0; i < hd; ++i)
      EXPECT_EQ(out[h * hd + i], p[h * stride + i] * (1.0f / p[h * stride + hd + 1]));
}

INSTANTIATE_TEST_SUITE_P(Paths, SplitKvTest, ::testing::ValuesIn(SupportedPaths()),
                         [](const auto& info) { return info.param; });

}  // namespace
}  // namespace strata::kernels
