// Stage protocol tests: message encode/decode (round trips, rejection of truncated, oversized
// and mutated input) and the adjacency rules. The handshake against a real stage and whole
// pipelines are tested with the execution code, in src/pipeline/pipeline_test.cc.
#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <random>
#include <thread>

#include "net/auth.h"
#include "net/protocol.h"
#include "net/transport.h"

namespace strata::net {
namespace {

// ---- protocol --------------------------------------------------------------------------

ForwardMsg SampleForward(uint32_t hidden_dim, Activations enc, std::mt19937& rng) {
  ForwardMsg m;
  m.id = rng();
  m.flags = kWantTokenIds;
  m.hidden_dim = hidden_dim;
  m.encoding = enc;
  std::uniform_real_distribution<float> u(-3.0f, 3.0f);
  for (int i = 0; i < 5; ++i) m.batch.Add(hidden_dim ? 0 : 100 + i, i, i % 2, i == 4);
  for (size_t i = 0; i < 5u * hidden_dim; ++i) m.hidden.push_back(u(rng));
  return m;
}

TEST(Protocol, ForwardRoundTrips) {
  std::mt19937 rng(1);
  for (uint32_t hd : {0u, 64u, 70u}) {
    const ForwardMsg m = SampleForward(hd, Activations::kF32, rng);
    auto dec = DecodeForward(EncodeForward(m).value());
    ASSERT_TRUE(dec.ok()) << dec.status().message();
    EXPECT_EQ(dec->id, m.id);
    EXPECT_EQ(dec->flags, m.flags);
    EXPECT_EQ(dec->batch.pos, m.batch.pos);
    EXPECT_EQ(dec->batch.seq, m.batch.seq);
    EXPECT_EQ(dec->batch.output, m.batch.output);
    if (hd == 0) {
      EXPECT_EQ(dec->batch.tokens, m.batch.tokens);
    }
    EXPECT_EQ(dec->hidden, m.hidden);  // F32: exact
  }
}

// A sampling row with a draft of 2 (the drafted rows follow it), then a new request's row.
ForwardMsg DraftedForward() {
  ForwardMsg m;
  m.id = 7;
  m.flags = kSample | kHasCopies;
  for (int i = 0; i < 3; ++i) m.batch.Add(100 + i, 10 + i, 0, true);
  m.batch.Add(5, 0, 1, true);
  m.copies = {{0, 2, 10}};
  m.samples.resize(4);
  m.samples[0].accept = {3, -3};  // a token, then a skip entry
  m.samples[0].draft = {101, 102};
  m.samples[1].drafted = m.samples[2].drafted = true;
  m.samples[3].reset = true;
  m.samples[3].params.temperature = 0;
  m.samples[3].params.seed = 42;
  m.samples[3].accept = {5};
  return m;
}

TEST(Protocol, SamplingRowsWithDraftsRoundTrip) {
  const ForwardMsg m = DraftedForward();
  auto dec = DecodeForward(EncodeForward(m).value());
  ASSERT_TRUE(dec.ok()) << dec.status().message();
  ASSERT_EQ(dec->samples.size(), 4u);
  for (size_t i = 0; i < 4; ++i) {
    const WireSample &a = dec->samples[i], &b = m.samples[i];
    EXPECT_EQ(a.reset, b.reset) << i;
    EXPECT_EQ(a.drafted, b.drafted) << i;
    EXPECT_EQ(a.accept, b.accept) << i;
    EXPECT_EQ(a.draft, b.draft) << i;
  }
  EXPECT_EQ(dec->samples[3].params.seed, 42u);
  EXPECT_EQ(dec->samples[3].params.temperature, 0.0f);
  ASSERT_EQ(dec->copies.size(), 1u);
  EXPECT_EQ(dec->copies[0].n, 10);
}

TEST(Protocol, RejectsUnknownSamplingRowFlags) {
  const ForwardMsg m = DraftedForward();
  std::vector<uint8_t> p = EncodeForward(m).value();
  // The last row is 1 flag byte, 9 parameters (36 bytes + 8 for the seed), a count and 1 id.
  const size_t flag_at = p.size() - (1 + 4 * 8 + 8 + 4 + 4);
  ASSERT_EQ(p[flag_at], 1);  // reset
  p[flag_at] = 0x81;
  auto dec = DecodeForward(p);
  ASSERT_FALSE(dec.ok());
  EXPECT_NE(dec.status().message().find("flags"), std::string::npos) << dec.status().message();
}

TEST(Protocol, Q8ActivationsAreCloseAndSmaller) {
  std::mt19937 rng(2);
  for (uint32_t hd : {64u, 70u}) {  // 70: a zero-padded last block
    const ForwardMsg f32 = SampleForward(hd, Activations::kF32, rng);
    ForwardMsg q8 = f32;
    q8.encoding = Activations::kQ8;
    const auto a = EncodeForward(f32).value(), b = EncodeForward(q8).value();
    EXPECT_EQ(a.size(), 18 + 5 * 9 + 5 * hd * 4);  // fixed fields + pos/seq/output + F32
    EXPECT_EQ(b.size(), 18 + 5 * 9 + 5 * Q8RowBytes(hd));
    EXPECT_EQ(Q8RowBytes(hd), (hd + 31) / 32 * 34);
    auto dec = DecodeForward(b).value();
    ASSERT_EQ(dec.hidden.size(), f32.hidden.size());
    for (size_t i = 0; i < f32.hidden.size(); ++i)
      EXPECT_NEAR(dec.hidden[i], f32.hidden[i], 3.0f / 127 * 0.51f + 1e-3f) << i;
  }
}

TEST(Protocol, OtherMessagesRoundTrip) {
  ResultMsg r;
  r.id = 9;
  r.kind = ResultKind::kLogits;
  r.rows = 2;
  r.cols = 3;
  r.values = {1, -2, 3.5f, 0, 1e-30f, -7};
  auto rd = DecodeResult(EncodeResult(r).value()).value();
  EXPECT_EQ(rd.values, r.values);
  EXPECT_EQ(rd.rows, 2u);
  ResultMsg t;
  t.id = 10;
  t.kind = ResultKind::kTokenIds;
  t.rows = 2;
  t.cols = 1;
  t.tokens = {5, 77};
  EXPECT_EQ(DecodeResult(EncodeResult(t).value()).value().tokens, t.tokens);
  ErrorMsg e{3, ErrorCode::kAuth, "nope"};
  auto ed = DecodeError(EncodeError(e)).value();
  EXPECT_EQ(ed.message, "nope");
  EXPECT_EQ(ed.code, ErrorCode::kAuth);
  ClearSeqMsg c{4, {0, 2}};
  EXPECT_EQ(DecodeClearSeq(EncodeClearSeq(c)).value().seqs, c.seqs);
  AuthMsg a;
  a.info.first = 1;
  a.info.last = 3;
  a.info.n_layers = 3;
  a.info.model_name = "m";
  a.proof[5] = 7;
  auto ad = DecodeAuth(EncodeAuth(a)).value();
  EXPECT_EQ(ad.info.last, 3u);
  EXPECT_EQ(ad.info.model_name, "m");
  EXPECT_EQ(ad.proof, a.proof);
}

TEST(Protocol, RejectsBadHeaders) {
  const std::vector<uint8_t> payload(10, 1);
  std::vector<uint8_t> f = EncodeFrame(FrameType::kForward, payload);
  auto h = DecodeFrameHeader(f.data(), 100);
  ASSERT_TRUE(h.ok());
  EXPECT_EQ(h->length, 10u);
  EXPECT_EQ(h->type, FrameType::kForward);
  auto big = DecodeFrameHeader(f.data(), 9);  // over the limit
  ASSERT_FALSE(big.ok());
  EXPECT_NE(big.status().message().find("exceeds the limit"), std::string::npos);
  auto g = f;
  g[0] ^= 0xff;
  EXPECT_FALSE(DecodeFrameHeader(g.data(), 100).ok());  // magic
  g = f;
  g[8] = 99;
  EXPECT_FALSE(DecodeFrameHeader(g.data(), 100).ok());  // type
  g = f;
  g[10] = 1;
  EXPECT_FALSE(DecodeFrameHeader(g.data(), 100).ok());  // flags
}

// The header rules hold in both directions, with messages that say which rule.
TEST(Protocol, ResultAndErrorRulesNameTheField) {
  auto message = [](const Status& st) { return st.message(); };
  ResultMsg r;
  r.kind = ResultKind::kLogits;
  r.encoding = Activations::kQ8;
  r.rows = 1;
  r.cols = 32;
  r.values.assign(32, 1.0f);
  EXPECT_EQ(message(EncodeResult(r).status()), "result: logits must be F32");
  r.kind = ResultKind::kHidden;
  auto hidden = EncodeResult(r).value();
  hidden[8] = static_cast<uint8_t>(ResultKind::kLogits);  // the kind byte, after the id
  EXPECT_EQ(message(DecodeResult(hidden).status()), "Result: logits must be F32");
  ResultMsg none;
  none.rows = 1;
  EXPECT_EQ(message(EncodeResult(none).status()), "result: empty result with a shape");
  ResultMsg t;
  t.kind = ResultKind::kTokenIds;
  t.rows = 2;
  t.cols = 1;
  t.tokens = {1};
  EXPECT_EQ(message(EncodeResult(t).status()), "result holds 1 token ids, expected 2");
  t.cols = 2;
  EXPECT_EQ(message(EncodeResult(t).status()), "result: token ids come one per row");

  auto e = EncodeError({1, ErrorCode::kRequest, "abc"});
  e[8] = 200;  // the code, after the id
  EXPECT_EQ(message(DecodeError(e).status()), "Error: unknown code 200");
  auto c = EncodeClearSeq({1, {1, 2}});
  c[8] = 3;  // three sequences promised, two sent
  EXPECT_EQ(message(DecodeClearSeq(c).status()),
            "ClearSeq: 3 values do not fit in 8 payload bytes");
}

// Every message type: every strict prefix and any extension is refused.
TEST(Protocol, RejectsTruncatedAndTrailing) {
  std::mt19937 rng(3);
  std::vector<std::pair<const char*, std::vector<uint8_t>>> cases = {
      {"fwd-tokens", EncodeForward(SampleForward(0, Activations::kF32, rng)).value()},
      {"fwd-f32", EncodeForward(SampleForward(64, Activations::kF32, rng)).value()},
      {"fwd-q8", EncodeForward(SampleForward(64, Activations::kQ8, rng)).value()},
  };
  auto check = [](const std::vector<uint8_t>& p) -> bool { return DecodeForward(p).ok(); };
  for (auto& [name, p] : cases) {
    ASSERT_TRUE(check(p)) << name;
    for (size_t n = 0; n < p.size(); ++n)
      EXPECT_FALSE(check(std::vector<uint8_t>(p.begin(), p.begin() + n)))
          << name << " prefix " << n;
    auto longer = p;
    longer.push_back(0);
    EXPECT_FALSE(check(longer)) << name;
  }
  ResultMsg r;
  r.kind = ResultKind::kLogits;
  r.rows = 1;
  r.cols = 4;
  r.values = {1, 2, 3, 4};
  const auto rp = EncodeResult(r).value();
  for (size_t n = 0; n < rp.size(); ++n)
    EXPECT_FALSE(DecodeResult(std::vector<uint8_t>(rp.begin(), rp.begin() + n)).ok());
  const auto ep = EncodeError({1, ErrorCode::kRequest, "abc"});
  for (size_t n = 0; n < ep.size(); ++n)
    EXPECT_FALSE(DecodeError(std::vector<uint8_t>(ep.begin(), ep.begin() + n)).ok());
  // Counts that promise far more data than the payload holds (no huge allocation, no crash).
  auto huge = EncodeClearSeq({1, {1, 2}});
  huge[8] = huge[9] = huge[10] = 0xff;
  EXPECT_FALSE(DecodeClearSeq(huge).ok());
  auto fwd = cases[1].second;
  fwd[10] = fwd[11] = fwd[12] = fwd[13] = 0xff;  // n tokens
  EXPECT_FALSE(DecodeForward(fwd).ok());
}

// Random mutations of valid payloads: decoding never crashes, and whatever is accepted is
// canonical (re-encodes to the same bytes), so no malformed input slips through half-read.
TEST(Protocol, FuzzMutations) {
  std::mt19937 rng(4);
  std::vector<std::vector<uint8_t>> seeds = {
      EncodeForward(SampleForward(0, Activations::kF32, rng)).value(),
      EncodeForward(SampleForward(32, Activations::kF32, rng)).value(),
      EncodeForward(SampleForward(32, Activations::kQ8, rng)).value(),
  };
  ResultMsg r;
  r.kind = ResultKind::kTokenIds;
  r.rows = 3;
  r.cols = 1;
  r.tokens = {1, 2, 3};
  seeds.push_back(EncodeResult(r).value());
  seeds.push_back(EncodeError({1, ErrorCode::kRequest, "x"}));
  seeds.push_back(EncodeClearSeq({1, {3}}));
  AuthMsg a;
  a.info.model_name = "abc";
  seeds.push_back(EncodeAuth(a));
  int accepted = 0, total = 0;
  for (int it = 0; it < 4000; ++it) {
    std::vector<uint8_t> p = seeds[rng() % seeds.size()];
    const int n_mut = 1 + static_cast<int>(rng() % 4);
    for (int k = 0; k < n_mut; ++k) {
      switch (rng() % 4) {
        case 0:
          if (!p.empty()) p[rng() % p.size()] = static_cast<uint8_t>(rng());
          break;
        case 1:
          if (!p.empty()) p.resize(rng() % p.size());
          break;
        case 2: p.push_back(static_cast<uint8_t>(rng())); break;
        case 3:
          if (!p.empty()) p[rng() % p.size()] ^= static_cast<uint8_t>(1u << (rng() % 8));
          break;
      }
    }
    ++total;
    if (auto m = DecodeForward(p); m.ok()) {
      ++accepted;
      if (m->encoding == Activations::kF32) {
        EXPECT_EQ(EncodeForward(*m).value(), p);
      }
    }
    if (auto m = DecodeResult(p); m.ok()) {
      ++accepted;
      if (m->encoding == Activations::kF32) {
        EXPECT_EQ(EncodeResult(*m).value(), p);
      }
    }
    // A message that decodes encodes to the same bytes.
    auto round_trip = [&](const auto& m, const auto& encode) {
      if (!m.ok()) return;
      ++accepted;
      EXPECT_EQ(encode(m.value()), p);
    };
    round_trip(DecodeError(p), EncodeError);
    round_trip(DecodeClearSeq(p), EncodeClearSeq);
    round_trip(DecodeAuth(p), EncodeAuth);
    round_trip(DecodeHello(p), EncodeHello);
    if (p.size() >= kFrameHeaderBytes) (void)DecodeFrameHeader(p.data(), 1 << 20);
  }
  EXPECT_GT(accepted, 0);  // value-only mutations do get through (and were checked)
  EXPECT_LT(accepted, total);
}

TEST(Protocol, CheckAdjacent) {
  const StageInfo a{.n_layers = 4, .first = 0, .last = 2, .hidden = 8, .n_vocab = 10};
  StageInfo b = a;
  b.first = 2;
  b.last = 4;
  EXPECT_TRUE(CheckAdjacent(a, b).ok());
  StageInfo driver = a;
  driver.last = 0;
  EXPECT_FALSE(CheckAdjacent(driver, b).ok());
  StageInfo b0 = b;
  b0.first = 0;
  EXPECT_TRUE(CheckAdjacent(driver, b0).ok());
  StageInfo c = b;
  c.first = 1;
  EXPECT_NE(CheckAdjacent(a, c).message().find("overlap"), std::string::npos);
  c.first = 3;
  EXPECT_NE(CheckAdjacent(a, c).message().find("not adjacent"), std::string::npos);
  StageInfo d = b;
  d.fingerprint[0] = 1;
  EXPECT_NE(CheckAdjacent(a, d).message().find("fingerprint mismatch"), std::string::npos);
  StageInfo e = b;
  e.last = 5;
  EXPECT_FALSE(CheckAdjacent(a, e).ok());
}

}  // namespace
}  // namespace strata::net
