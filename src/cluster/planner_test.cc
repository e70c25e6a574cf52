#include "cluster/planner.h"
#include "cluster/speed_probe.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "gguf/gguf.h"
#include "model/kv_cache.h"
#include "model/testing/tiny_model.h"
#include "model/weights.h"

namespace strata::cluster {
namespace {

namespace fs = std::filesystem;

// ---- Synthesized GGUF files ---------------------------------------------------------------

class PlannerFileTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new fs::path(fs::temp_directory_path() /
                        ("strata_planner_test_" + std::to_string(::getpid())));
    fs::create_directories(*dir_);
    // Untied head (qwen2) and tied head with llama3 rope factors (a tensor every stage binds).
    testdata::TinyModelSpec q;
    q.n_layers = 5;
    untied_ = new std::string((*dir_ / "untied.gguf").string());
    ASSERT_TRUE(testdata::WriteTinyModel(q, *untied_).ok());

    testdata::TinyModelSpec l;
    l.shape = "tiny-llama";
    l.n_layers = 3;
    l.tied = true;
    tied_ = new std::string((*dir_ / "tied.gguf").string());
    ASSERT_TRUE(testdata::WriteTinyModel(l, *tied_).ok());
  }
  static void TearDownTestSuite() {
    std::error_code ec;
    fs::remove_all(*dir_, ec);
    delete dir_;
    delete untied_;
    delete tied_;
  }
  static fs::path* dir_;
  static std::string* untied_;
  static std::string* tied_;
};
fs::path* PlannerFileTest::dir_ = nullptr;
std::string* PlannerFileTest::untied_ = nullptr;
std::string* PlannerFileTest::tied_ = nullptr;

TEST_F(PlannerFileTest, MemoryMatchesTensorTable) {
  auto f = gguf::File::Open(*untied_);
  ASSERT_TRUE(f.ok()) << f.status().message();
  auto mr = ModelMemoryFromGguf(*f.value());
  ASSERT_TRUE(mr.ok()) << mr.status().message();
  const ModelMemory& m = mr.value();
  ASSERT_EQ(m.n_layers, 5);
  EXPECT_FALSE(m.tied_output);

  // Independent sums over the tensor table.
  std::vector<uint64_t> per_layer(5, 0);
  uint64_t total = 0;
  for (const auto& t : f.value()->tensors()) {
    total += t.nbytes;
    for (int il = 0; il < 5; ++il)
      if (std::string(t.name).rfind("blk." + std::to_string(il) + ".", 0) == 0)
        per_layer[static_cast<size_t>(il)] += t.nbytes;
  }
  EXPECT_EQ(m.layer_bytes, per_layer);
  EXPECT_EQ(m.total_tensor_bytes, total);
  const auto* embd = f.value()->FindTensor("token_embd.weight");
  const auto* out = f.value()->FindTensor("output.weight");
  const auto* norm = f.value()->FindTensor("output_norm.weight");
  ASSERT_TRUE(embd && out && norm);
  EXPECT_EQ(m.embd_bytes, embd->nbytes);
  EXPECT_EQ(m.output_bytes, out->nbytes);
  EXPECT_EQ(m.output_norm_bytes, norm->nbytes);
  EXPECT_EQ(m.embd_row_bytes, embd->nbytes / static_cast<uint64_t>(embd->dims[1]));
  uint64_t parts =
      m.embd_bytes + m.output_bytes + m.output_norm_bytes + m.shared_bytes + m.other_bytes;
  for (uint64_t b : m.layer_bytes) parts += b;
  EXPECT_EQ(parts, total);

  // A whole-model stage maps every tensor once.
  PlanOptions o;
  EXPECT_EQ(StageMemoryFor(m, 0, 5, o).weights, total - m.other_bytes);
}

// The weights a stage is charged for are exactly what the model binds for that range.
void ExpectMatchesBoundBytes(const std::string& path) {
  auto mr = ModelMemoryFromGguf(path);
  ASSERT_TRUE(mr.ok()) << mr.status().message();
  const ModelMemory& m = mr.value();
  PlanOptions o;
  for (int a = 0; a < m.n_layers; ++a) {
    for (int b = a + 1; b <= m.n_layers; ++b) {
      auto model = Model::Load(path, a, b);
      ASSERT_TRUE(model.ok()) << model.status().message();
      EXPECT_EQ(StageMemoryFor(m, a, b, o).weights, model.value()->bound_weight_bytes())
          << path << " layers [" << a << ", " << b << ")";
    }
  }
}

TEST_F(PlannerFileTest, StageWeightsEqualBoundBytesUntied) { ExpectMatchesBoundBytes(*untied_); }
TEST_F(PlannerFileTest, StageWeightsEqualBoundBytesTied) { ExpectMatchesBoundBytes(*tied_); }

TEST_F(PlannerFileTest, TiedHeadMapsEmbeddingOnLastStage) {
  auto tr = ModelMemoryFromGguf(*tied_);
  ASSERT_TRUE(tr.ok()) << tr.status().message();
  const ModelMemory& t = tr.value();
  EXPECT_TRUE(t.tied_output);
  EXPECT_EQ(t.output_bytes, 0u);
  EXPECT_GT(t.shared_bytes, 0u);  // rope_freqs.weight
  EXPECT_EQ(t.head_matrix_bytes(), t.embd_bytes);
  PlanOptions o;
  const StageMemory first = StageMemoryFor(t, 0, 1, o);
  const StageMemory last = StageMemoryFor(t, 1, t.n_layers, o);
  const StageMemory whole = StageMemoryFor(t, 0, t.n_layers, o);
  EXPECT_EQ(first.weights, t.layer_bytes[0] + t.embd_bytes + t.shared_bytes);
  EXPECT_EQ(last.weights, t.layer_bytes[1] + t.layer_bytes[2] + t.output_norm_bytes + t.embd_bytes +
                              t.shared_bytes);
  // One stage holding both ends maps the embedding once.
  EXPECT_EQ(whole.weights, first.weights + last.weights - t.embd_bytes - t.shared_bytes);

  auto ur = ModelMemoryFromGguf(*untied_);
  ASSERT_TRUE(ur.ok());
  const ModelMemory& u = ur.value();
  const StageMemory ulast = StageMemoryFor(u, 4, 5, o);
  EXPECT_EQ(ulast.weights, u.layer_bytes[4] + u.output_norm_bytes + u.output_bytes);
  EXPECT_EQ(StageMemoryFor(u, 0, 1, o).weights, u.layer_bytes[0] + u.embd_bytes);
  EXPECT_EQ(StageMemoryFor(u, 1, 4, o).weights,
            u.layer_bytes[1] + u.layer_bytes[2] + u.layer_bytes[3]);
}

TEST_F(PlannerFileTest, KvBytesMatchKvCache) {
  auto mr = ModelMemoryFromGguf(*untied_);
  ASSERT_TRUE(mr.ok());
  const ModelMemory& m = mr.value();
  for (int ctx : {128, 4096}) {
    for (int par : {1, 3}) {
      for (DType t : {DType::F16, DType::Q8_0, DType::Q4_0}) {
        PlanOptions o;
        o.n_ctx = ctx;
        o.n_parallel = par;
        o.cache_type_k = t;
        o.cache_type_v = t == DType::Q4_0 ? DType::Q8_0 : t;
        auto kv = KvCache::Create(3, par, ctx, m.kv_dim, o.cache_type_k, o.cache_type_v);
        ASSERT_TRUE(kv.ok());
        EXPECT_EQ(StageMemoryFor(m, 1, 4, o).kv, kv.value().bytes());
        EXPECT_EQ(KvBytesPerLayer(m, o) * 3, kv.value().bytes());
      }
    }
  }
}

TEST_F(PlannerFileTest, DeterministicFromFile) {
  auto a = ModelMemoryFromGguf(*untied_);
  auto b = ModelMemoryFromGguf(*untied_);
  ASSERT_TRUE(a.ok() && b.ok());
  std::vector<PlanNode> nodes = {{"x", 8 * kGiB, 1.3}, {"y", 8 * kGiB, 0.7}, {"z", 8 * kGiB, 1.0}};
  auto p1 = PlanPipeline(a.value(), nodes, PlanOptions());
  auto p2 = PlanPipeline(b.value(), nodes, PlanOptions());
  ASSERT_TRUE(p1.ok() && p2.ok()) << p1.status().message();
  ASSERT_EQ(p1.value().stages.size(), 3u);
  for (size_t i = 0; i < 3; ++i) {
    EXPECT_EQ(p1.value().stages[i].first, p2.value().stages[i].first);
    EXPECT_EQ(p1.value().stages[i].last, p2.value().stages[i].last);
    EXPECT_EQ(p1.value().stages[i].memory.total(), p2.value().stages[i].memory.total());
  }
}

TEST_F(PlannerFileTest, MissingFileIsAnError) {
  auto r = ModelMemoryFromGguf((*dir_ / "nope.gguf").string());
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("nope.gguf"), std::string::npos);
}

// ---- Planning on hand-made models ---------------------------------------------------------

// L layers of `layer` bytes each, an untied head of `head` bytes, embedding of `embd` bytes.
ModelMemory MakeModel(int L, uint64_t layer, uint64_t embd = 4 * kMiB, uint64_t head = 4 * kMiB) {
  ModelMemory m;
  m.arch = "qwen2";
  m.n_layers = L;
  m.hidden = 256;
  m.ffn = 512;
  m.q_dim = 256;
  m.kv_dim = 64;
  m.n_vocab = 1000;
  m.layer_bytes.assign(static_cast<size_t>(L), layer);
  m.embd_bytes = embd;
  m.embd_row_bytes = embd / 1000;
  m.output_norm_bytes = 1024;
  m.output_bytes = head;
  m.total_tensor_bytes = layer * static_cast<uint64_t>(L) + embd + head + 1024;
  return m;
}

std::vector<int> LayerCounts(const Plan& p) {
  std::vector<int> n;
  for (const auto& s : p.stages) n.push_back(s.n_layers());
  return n;
}

void ExpectValidPlan(const Plan& p, const ModelMemory& m, const std::vector<PlanNode>& nodes) {
  ASSERT_EQ(p.stages.size(), nodes.size());
  int next = 0;
  double share = 0;
  for (size_t i = 0; i < nodes.size(); ++i) {
    const StagePlan& s = p.stages[i];
    EXPECT_EQ(s.node, nodes[i].name);
    EXPECT_EQ(s.first, next);
    EXPECT_GE(s.n_layers(), 1);
    EXPECT_LE(s.memory.total(), nodes[i].free_memory_bytes) << s.node;
    next = s.last;
    share += s.time_share;
  }
  EXPECT_EQ(next, m.n_layers);
  EXPECT_NEAR(share, 1.0, 1e-9);
}

TEST(Planner, EqualNodesSplitEvenly) {
  const ModelMemory m = MakeModel(24, 50 * kMiB, 4 * kMiB, 4 * kMiB);
  std::vector<PlanNode> nodes = {{"a", 16 * kGiB, 1}, {"b", 16 * kGiB, 1}, {"c", 16 * kGiB, 1}};
  auto p = PlanPipeline(m, nodes, PlanOptions());
  ASSERT_TRUE(p.ok()) << p.status().message();
  ExpectValidPlan(p.value(), m, nodes);
  EXPECT_EQ(LayerCounts(p.value()), (std::vector<int>{8, 8, 8}));

  auto p2 = PlanPipeline(m, {{"a", 16 * kGiB, 1}, {"b", 16 * kGiB, 1}}, PlanOptions());
  ASSERT_TRUE(p2.ok());
  EXPECT_EQ(LayerCounts(p2.value()), (std::vector<int>{12, 12}));
}

TEST(Planner, KvTokensThatFitTheFreeMemory) {
  const ModelMemory m = MakeModel(8, 10 * kMiB);
  PlanOptions o;
  o.n_ctx = 1024;
  o.n_parallel = 1;
  const StageMemory s = StageMemoryFor(m, 0, 4, o);
  const uint64_t fixed = s.weights + s.scratch + s.overhead;
  const uint64_t per_token_f16 = 4 * 2 * 64 * 2;  // 4 layers x (K + V) x 64 x f16
  EXPECT_EQ(KvTokensThatFit(m, 0, 4, fixed + 1000 * per_token_f16 + 5, o), 1000u);
  EXPECT_EQ(KvTokensThatFit(m, 0, 4, fixed / 2, o), 0u);
  o.cache_type_k = o.cache_type_v = DType::Q8_0;  // 34 bytes per 32 elements
  EXPECT_EQ(KvTokensThatFit(m, 0, 4, fixed + 1000 * per_token_f16, o), 1000u * 64 / 34);
}

TEST(Planner, HeadWorkShiftsLayersAway) {
  // The output head streams as much as 4 layers: the last stage gets fewer layers.
  const ModelMemory m = MakeModel(24, 50 * kMiB, 200 * kMiB, 200 * kMiB);
  std::vector<PlanNode> nodes = {{"a", 16 * kGiB, 1}, {"b", 16 * kGiB, 1}};
  auto p = PlanPipeline(m, nodes, PlanOptions());
  ASSERT_TRUE(p.ok()) << p.status().message();
  ExpectValidPlan(p.value(), m, nodes);
  EXPECT_EQ(LayerCounts(p.value()), (std::vector<int>{14, 10}));
}

TEST(Planner, FasterNodeGetsMoreLayers) {
  const ModelMemory m = MakeModel(24, 50 * kMiB);
  for (bool fast_first : {true, false}) {
    std::vector<PlanNode> nodes = {{"a", 16 * kGiB, fast_first ? 2.0 : 1.0},
                                   {"b", 16 * kGiB, fast_first ? 1.0 : 2.0}};
    auto p = PlanPipeline(m, nodes, PlanOptions());
    ASSERT_TRUE(p.ok()) << p.status().message();
    ExpectValidPlan(p.value(), m, nodes);
    const std::vector<int> n = LayerCounts(p.value());
    EXPECT_EQ(fast_first ? n[0] : n[1], 16);
    EXPECT_EQ(fast_first ? n[1] : n[0], 8);
  }
}

TEST(Planner, SmallMemoryNodeGetsFewerLayers) {
  const ModelMemory m = MakeModel(24, 50 * kMiB);
  PlanOptions o;
  // Node b can hold at most 5 layers (plus its head and fixed costs).
  const uint64_t b_free = StageMemoryFor(m, 19, 24, o).total();
  std::vector<PlanNode> nodes = {{"a", 16 * kGiB, 1}, {"b", b_free, 1}, {"c", 16 * kGiB, 1}};
  // With b in the middle it is not the last stage, so compute its limit there instead.
  const uint64_t mid_free = StageMemoryFor(m, 8, 13, o).total();
  nodes[1].free_memory_bytes = mid_free;
  auto p = PlanPipeline(m, nodes, o);
  ASSERT_TRUE(p.ok()) << p.status().message();
  ExpectValidPlan(p.value(), m, nodes);
  EXPECT_EQ(p.value().stages[1].n_layers(), 5);
  EXPECT_EQ(p.value().stages[0].n_layers() + p.value().stages[2].n_layers(), 19);

  std::vector<PlanNode> two = {{"a", 16 * kGiB, 1}, {"b", b_free, 1}};
  auto p2 = PlanPipeline(m, two, o);
  ASSERT_TRUE(p2.ok()) << p2.status().message();
  ExpectValidPlan(p2.value(), m, two);
  EXPECT_EQ(LayerCounts(p2.value()), (std::vector<int>{19, 5}));
  // One byte less and b holds only 4.
  two[1].free_memory_bytes = b_free - 1;
  auto p3 = PlanPipeline(m, two, o);
  ASSERT_TRUE(p3.ok());
  EXPECT_EQ(LayerCounts(p3.value()), (std::vector<int>{20, 4}));
}

TEST(Planner, EveryNodeGetsAtLeastOneLayer) {
  const ModelMemory m = MakeModel(6, 50 * kMiB);
  std::vector<PlanNode> nodes = {{"a", 16 * kGiB, 1e-6},
                                 {"b", 16 * kGiB, 100},
                                 {"c", 16 * kGiB, 1e-6},
                                 {"d", 16 * kGiB, 1e-6}};
  auto p = PlanPipeline(m, nodes, PlanOptions());
  ASSERT_TRUE(p.ok()) << p.status().message();
  ExpectValidPlan(p.value(), m, nodes);
  EXPECT_EQ(LayerCounts(p.value()), (std::vector<int>{1, 3, 1, 1}));

  // As many nodes as layers: one each.
  std::vector<PlanNode> six;
  six.reserve(6);
  for (int i = 0; i < 6; ++i) six.push_back({"n" + std::to_string(i), 16 * kGiB, 1.0 + i});
  auto p6 = PlanPipeline(m, six, PlanOptions());
  ASSERT_TRUE(p6.ok());
  EXPECT_EQ(LayerCounts(p6.value()), std::vector<int>(6, 1));
}

TEST(Planner, MoreNodesThanLayersIsAnError) {
  const ModelMemory m = MakeModel(3, 50 * kMiB);
  std::vector<PlanNode> nodes;
  nodes.reserve(4);
  for (int i = 0; i < 4; ++i) nodes.push_back({"n" + std::to_string(i), 16 * kGiB, 1});
  auto p = PlanPipeline(m, nodes, PlanOptions());
  ASSERT_FALSE(p.ok());
  EXPECT_NE(p.status().message().find("4 nodes but the model has only 3 layers"), std::string::npos)
      << p.status().message();
}

TEST(Planner, InvalidInputsAreErrors) {
  const ModelMemory m = MakeModel(4, 50 * kMiB);
  EXPECT_FALSE(PlanPipeline(m, {}, PlanOptions()).ok());
  EXPECT_FALSE(PlanPipeline(m, {{"a", kGiB, 0}}, PlanOptions()).ok());
  EXPECT_FALSE(PlanPipeline(m, {{"a", kGiB, -1}}, PlanOptions()).ok());
  EXPECT_FALSE(
      PlanPipeline(m, {{"a", kGiB, std::numeric_limits<double>::quiet_NaN()}}, PlanOptions()).ok());
  EXPECT_FALSE(PlanPipeline(m, {{"a", kGiB, 1}, {"a", kGiB, 1}}, PlanOptions()).ok());
  EXPECT_FALSE(PlanPipeline(m, {{"", kGiB, 1}}, PlanOptions()).ok());
  PlanOptions bad;
  bad.n_ctx = 0;
  EXPECT_FALSE(PlanPipeline(m, {{"a", 16 * kGiB, 1}}, bad).ok());
}

// Smallest total shortfall over all 2-way splits, by enumeration.
uint64_t BruteShortfall2(const ModelMemory& m, uint64_t fa, uint64_t fb, const PlanOptions& o,
                         int* best_k) {
  uint64_t best = std::numeric_limits<uint64_t>::max();
  for (int k = 1; k < m.n_layers; ++k) {
    const uint64_t na = StageMemoryFor(m, 0, k, o).total();
    const uint64_t nb = StageMemoryFor(m, k, m.n_layers, o).total();
    const uint64_t s = (na > fa ? na - fa : 0) + (nb > fb ? nb - fb : 0);
    if (s < best) {
      best = s;
      *best_k = k;
    }
  }
  return best;
}

TEST(Planner, DoesNotFitReportsSmallestShortfall) {
  const ModelMemory m = MakeModel(28, 100 * kMiB, 200 * kMiB, 200 * kMiB);
  PlanOptions o;
  // a is roomy, b can't even hold the last layer with the head.
  const uint64_t b_need_min = StageMemoryFor(m, 27, 28, o).total();
  const uint64_t fa = 16 * kGiB, fb = b_need_min - 300 * kMiB;
  auto p = PlanPipeline(m, {{"a", fa, 1}, {"b", fb, 1}}, o);
  ASSERT_FALSE(p.ok());
  const std::string msg = p.status().message();
  int k = 0;
  const uint64_t expect = BruteShortfall2(m, fa, fb, o, &k);
  EXPECT_EQ(expect, 300 * kMiB);
  EXPECT_EQ(k, 27);
  EXPECT_NE(msg.find("does not fit: needs 300.0 MiB (" + std::to_string(expect) + " bytes) more"),
            std::string::npos)
      << msg;
  EXPECT_NE(msg.find("node b has " + FormatBytes(fb) + " free for layers 27-27 needing " +
                     FormatBytes(b_need_min)),
            std::string::npos)
      << msg;
  EXPECT_EQ(msg.find("node a has"), std::string::npos) << msg;

  // Both short: the total shortfall is the exact minimum over all splits.
  const uint64_t whole = StageMemoryFor(m, 0, 28, o).total();
  const uint64_t fa2 = whole / 3, fb2 = whole / 4;
  auto p2 = PlanPipeline(m, {{"a", fa2, 1}, {"b", fb2, 2}}, o);
  ASSERT_FALSE(p2.ok());
  const uint64_t expect2 = BruteShortfall2(m, fa2, fb2, o, &k);
  EXPECT_NE(p2.status().message().find("(" + std::to_string(expect2) + " bytes) more"),
            std::string::npos)
      << p2.status().message();
  EXPECT_NE(p2.status().message().find("node a has"), std::string::npos);
  EXPECT_NE(p2.status().message().find("node b has"), std::string::npos);
}

TEST(Planner, KvCacheCountsTowardsFit) {
  const ModelMemory m = MakeModel(8, 10 * kMiB);
  PlanOptions small;
  small.n_ctx = 1024;
  const uint64_t free = StageMemoryFor(m, 0, 8, small).total();
  ASSERT_TRUE(PlanPipeline(m, {{"a", free, 1}}, small).ok());
  PlanOptions big = small;
  big.n_parallel = 4;
  auto p = PlanPipeline(m, {{"a", free, 1}}, big);
  ASSERT_FALSE(p.ok());
  const uint64_t extra = StageMemoryFor(m, 0, 8, big).total() - free;
  EXPECT_NE(p.status().message().find("(" + std::to_string(extra) + " bytes) more"),
            std::string::npos)
      << p.status().message();
}

// Random instances against exhaustive search over 3-way splits: the planner's bottleneck is
// the smallest among fitting splits, and it fails exactly when none fits.
TEST(Planner, MatchesExhaustiveSearch) {
  std::mt19937_64 rng(12345);
  PlanOptions o;
  o.n_ctx = 512;
  int n_fit = 0, n_short = 0;
  for (int iter = 0; iter < 200; ++iter) {
    const int L = 3 + static_cast<int>(rng() % 14);
    ModelMemory m = MakeModel(L, 0, (1 + rng() % 50) * kMiB, (1 + rng() % 80) * kMiB);
    for (auto& b : m.layer_bytes) b = (5 + rng() % 40) * kMiB;  // uneven layers
    const uint64_t whole = StageMemoryFor(m, 0, L, o).total();
    std::vector<PlanNode> nodes;
    nodes.reserve(3);
    for (int j = 0; j < 3; ++j)
      nodes.push_back({std::string(1, static_cast<char>('a' + j)), whole / 5 + rng() % (whole / 2),
                       0.25 + static_cast<double>(rng() % 100) / 25});
    double best = std::numeric_limits<double>::infinity();
    for (int i = 1; i < L; ++i)
      for (int k = i + 1; k < L; ++k) {
        const int cut[4] = {0, i, k, L};
        double worst = 0;
        bool fit = true;
        for (int j = 0; j < 3; ++j) {
          fit =
              fit && StageMemoryFor(m, cut[j], cut[j + 1], o).total() <= nodes[j].free_memory_bytes;
          worst = std::max(worst, StageCost(m, cut[j], cut[j + 1]) / nodes[j].speed);
        }
        if (fit) best = std::min(best, worst);
      }
    auto p = PlanPipeline(m, nodes, o);
    (std::isinf(best) ? n_short : n_fit)++;
    if (std::isinf(best)) {
      EXPECT_FALSE(p.ok()) << "iteration " << iter;
      if (!p.ok()) {
        EXPECT_NE(p.status().message().find("does not fit"), std::string::npos);
      }
    } else {
      ASSERT_TRUE(p.ok()) << "iteration " << iter << ": " << p.status().message();
      ExpectValidPlan(p.value(), m, nodes);
      EXPECT_DOUBLE_EQ(p.value().bottleneck, best) << "iteration " << iter;
    }
  }
  // Both outcomes are exercised.
  EXPECT_GT(n_fit, 20);
  EXPECT_GT(n_short, 20);
}

TEST(Planner, Deterministic) {
  ModelMemory m = MakeModel(20, 0);
  for (int i = 0; i < 20; ++i) m.layer_bytes[static_cast<size_t>(i)] = (10 + (i * 7) % 13) * kMiB;
  std::vector<PlanNode> nodes = {
      {"a", 900 * kMiB, 1.1}, {"b", 700 * kMiB, 0.9}, {"c", 2 * kGiB, 1}};
  auto first = PlanPipeline(m, nodes, PlanOptions());
  ASSERT_TRUE(first.ok()) << first.status().message();
  for (int rep = 0; rep < 20; ++rep) {
    auto again = PlanPipeline(ModelMemory(m), std::vector<PlanNode>(nodes), PlanOptions());
    ASSERT_TRUE(again.ok());
    ASSERT_EQ(LayerCounts(again.value()), LayerCounts(first.value()));
    EXPECT_EQ(again.value().bottleneck, first.value().bottleneck);
  }
}

TEST(Planner, PipelineNodesFromConfig) {
  ClusterConfig c;
  c.source = "cluster.yaml";
  auto node = [](std::string name, std::string next, int64_t mem, double speed) {
    cluster::NodeSpec n;
    n.name = std::move(name);
    n.next = std::move(next);
    n.memory = mem;
    n.speed = speed;
    return n;
  };
  c.nodes = {node("b", "c", int64_t{2} << 30, 1.0), node("a", "b", int64_t{1} << 30, 2.0),
             node("c", "", int64_t{3} << 30, 0.5), node("r", "", 0, 1.0)};
  auto p = PipelineNodesFromConfig(c, "a");
  ASSERT_TRUE(p.ok()) << p.status().message();
  ASSERT_EQ(p.value().size(), 3u);
  EXPECT_EQ(p.value()[0].name, "a");
  EXPECT_EQ(p.value()[1].name, "b");
  EXPECT_EQ(p.value()[2].name, "c");
  EXPECT_EQ(p.value()[0].free_memory_bytes, uint64_t{1} << 30);
  EXPECT_DOUBLE_EQ(p.value()[2].speed, 0.5);
  EXPECT_FALSE(PipelineNodesFromConfig(c, "nobody").ok());
  EXPECT_FALSE(PipelineNodesFromConfig(c, "r").ok());  // no memory
  c.nodes[2].next = "a";
  auto loop = PipelineNodesFromConfig(c, "a");
  ASSERT_FALSE(loop.ok());
  EXPECT_NE(loop.status().message().find("loops"), std::string::npos);
}

// ---- Node facts and text ------------------------------------------------------------------

TEST(PlannerText, FormatBytes) {
  EXPECT_EQ(FormatBytes(100), "100 B");
  EXPECT_EQ(FormatBytes(1536), "1.5 KiB");
  EXPECT_EQ(FormatBytes(300 * kMiB), "300.0 MiB");
  EXPECT_EQ(FormatBytes(2 * kGiB + kGiB / 10), "2.1 GiB");
  EXPECT_EQ(LayerRangeText(14, 28), "14-27");
}

TEST(PlannerText, ParsePlanNode) {
  auto a = ParsePlanNode("gpu-box:mem=8GiB,speed=1.5");
  ASSERT_TRUE(a.ok()) << a.status().message();
  EXPECT_EQ(a.value().spec.name, "gpu-box");
  EXPECT_EQ(a.value().spec.free_memory_bytes, 8 * kGiB);
  EXPECT_DOUBLE_EQ(a.value().spec.speed, 1.5);
  EXPECT_FALSE(a.value().is_local);
  auto b = ParsePlanNode("b:mem=512MiB");
  ASSERT_TRUE(b.ok());
  EXPECT_DOUBLE_EQ(b.value().spec.speed, 1.0);
  auto l = ParsePlanNode("me:local");
  ASSERT_TRUE(l.ok());
  EXPECT_TRUE(l.value().is_local);
  EXPECT_EQ(l.value().spec.name, "me");
  EXPECT_FALSE(ParsePlanNode("nocolon").ok());
  EXPECT_FALSE(ParsePlanNode(":mem=1G").ok());
  EXPECT_FALSE(ParsePlanNode("a:speed=2").ok());  // no memory
  EXPECT_FALSE(ParsePlanNode("a:mem=lots").ok());
  EXPECT_FALSE(ParsePlanNode("a:mem=1G,speed=0").ok());
  EXPECT_FALSE(ParsePlanNode("a:mem=1G,speed=x").ok());
  EXPECT_FALSE(ParsePlanNode("a:mem=1G,color=red").ok());
  EXPECT_FALSE(ParsePlanNode("a b:mem=1G").ok());
}

TEST(PlannerNode, ParseMemAvailable) {
  const std::string text =
      "MemTotal:       16303020 kB\nMemFree:         1234567 kB\nMemAvailable:    8000000 kB\n"
      "Buffers:          123456 kB\n";
  auto v = ParseMemAvailable(text);
  ASSERT_TRUE(v.ok()) << v.status().message();
  EXPECT_EQ(v.value(), 8000000ull * 1024);
  EXPECT_FALSE(ParseMemAvailable("MemTotal: 1 kB\n").ok());
}

TEST(PlannerNode, LocalFactsArePositive) {
  auto free = LocalFreeMemory();
  ASSERT_TRUE(free.ok()) << free.status().message();
  EXPECT_GT(free.value(), 0u);
  const double speed = MeasureNodeSpeed(0.05, 1);
  EXPECT_GT(speed, 0);
  EXPECT_TRUE(std::isfinite(speed));
}

}  // namespace
}  // namespace strata::cluster
