// Stage protocol tests: message encode/decode (round trips, rejection of truncated, oversized
// and mutated input), the authenticated handshake, and whole pipelines of 2 and 3 stages over
// loopback TCP compared bit for bit with a single-model forward pass.
#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <random>
#include <thread>

#include "model/synth.h"
#include "net/auth.h"
#include "net/protocol.h"
#include "net/stage.h"
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

// Every message type: every strict prefix and any extension is refused.
TEST(Protocol, RejectsTruncatedAndTrailing) {
  std::mt19937 rng(3);
  std::vector<std::pair<const char*, std::vector<uint8_t>>> cases = {
      {"fwd-tokens", EncodeForward(SampleForward(0, Activations::kF32, rng)).value()},
      {"fwd-f32", EncodeForward(SampleForward(64, Activations::kF32, rng)).value()},
      {"fwd-q8", EncodeForward(SampleForward(64, Activations::kQ8, rng)).value()},
  };
  auto check = [](const std::vector<uint8_t>& p) -> bool {
    return DecodeForward(p).ok();
  };
  for (auto& [name, p] : cases) {
    ASSERT_TRUE(check(p)) << name;
    for (size_t n = 0; n < p.size(); ++n)
      EXPECT_FALSE(check(std::vector<uint8_t>(p.begin(), p.begin() + n))) << name << " prefix " << n;
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
        case 0: if (!p.empty()) p[rng() % p.size()] = static_cast<uint8_t>(rng()); break;
        case 1: if (!p.empty()) p.resize(rng() % p.size()); break;
        case 2: p.push_back(static_cast<uint8_t>(rng())); break;
        case 3: if (!p.empty()) p[rng() % p.size()] ^= static_cast<uint8_t>(1u << (rng() % 8)); break;
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
    if (auto m = DecodeError(p); m.ok()) { ++accepted; EXPECT_EQ(EncodeError(*m), p); }
    if (auto m = DecodeClearSeq(p); m.ok()) { ++accepted; EXPECT_EQ(EncodeClearSeq(*m), p); }
    if (auto m = DecodeAuth(p); m.ok()) { ++accepted; EXPECT_EQ(EncodeAuth(*m), p); }
    if (auto m = DecodeHello(p); m.ok()) { ++accepted; EXPECT_EQ(EncodeHello(*m), p); }
    if (p.size() >= kFrameHeaderBytes) (void)DecodeFrameHeader(p.data(), 1 << 20);
  }
  EXPECT_GT(accepted, 0);  // value-only mutations do get through (and were checked)
  EXPECT_LT(accepted, total);
}

TEST(Protocol, CheckAdjacent) {
  StageInfo a;
  a.n_layers = 4;
  a.hidden = 8;
  a.n_vocab = 10;
  a.first = 0;
  a.last = 2;
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

// ---- models ----------------------------------------------------------------------------

std::string TinyModel(const std::string& arch) {
  const std::string path = (std::filesystem::temp_directory_path() /
                            ("strata_net_test_" + arch + ".gguf")).string();
  SynthOptions o;
  o.shape = NamedSynthShape(arch == "llama" ? "tiny-llama" : "tiny-qwen2").value();
  o.shape.n_layers = 3;
  o.shape.hidden = 64;
  o.shape.ffn = 96;
  o.shape.n_heads = 4;
  o.shape.n_kv_heads = 2;
  o.shape.r1_tokens = false;
  o.type = DType::Q8_0;
  o.seed = 11;
  o.vocab_path = std::string(STRATA_TEST_DATA) + "/vocab/ggml-vocab-llama-spm.gguf";
  o.threads = 2;
  Status st = SynthesizeModel(o, path);
  EXPECT_TRUE(st.ok()) << st.message();
  return path;
}

const std::string& QwenPath() {
  static const std::string p = TinyModel("qwen2");
  return p;
}

const char kSecret[] = "correct horse battery staple, 32+ bytes";

StageServerOptions ServerOpts() {
  StageServerOptions o;
  o.secret = kSecret;
  o.n_seq = 2;
  o.n_ctx = 64;
  o.threads = 2;
  o.handshake_timeout_ms = 1000;  // silent attackers are dropped after this
  return o;
}

StageClientOptions ClientOpts(const std::string& secret = kSecret) {
  StageClientOptions o;
  o.secret = secret;
  o.handshake_timeout_ms = 2000;
  return o;
}

std::unique_ptr<StageServer> StartStage(int first, int last, uint16_t next_port = 0) {
  auto m = Model::Load(QwenPath(), first, last);
  EXPECT_TRUE(m.ok()) << m.status().message();
  StageServerOptions o = ServerOpts();
  if (next_port) {
    o.next_host = "127.0.0.1";
    o.next_port = next_port;
  }
  auto s = StageServer::Start(std::move(m).value(), o);
  EXPECT_TRUE(s.ok()) << s.status().message();
  return s.ok() ? std::move(s).value() : nullptr;
}

TEST(Handshake, FingerprintIsPerFile) {
  auto a = gguf::File::Open(QwenPath()).value();
  auto b = gguf::File::Open(QwenPath()).value();
  auto c = gguf::File::Open(TinyModel("llama")).value();
  EXPECT_EQ(ModelFingerprint(*a), ModelFingerprint(*b));
  EXPECT_NE(ModelFingerprint(*a), ModelFingerprint(*c));
}

TEST(Handshake, AcceptsAdjacentRefusesWrongSecretOrModelOrRange) {
  auto server = StartStage(1, 3);
  ASSERT_NE(server, nullptr);
  const StageInfo head = StageInfoFor(*Model::Load(QwenPath(), 0, 1).value());

  auto ok = StageClient::Connect("127.0.0.1", server->port(), head, ClientOpts());
  ASSERT_TRUE(ok.ok()) << ok.status().message();
  EXPECT_EQ((*ok)->peer().first, 1u);
  EXPECT_EQ((*ok)->peer().last, 3u);

  auto bad = StageClient::Connect("127.0.0.1", server->port(), head, ClientOpts("wrong secret"));
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("authentication failed"), std::string::npos)
      << bad.status().message();

  const StageInfo other = StageInfoFor(*Model::Load(TinyModel("llama"), 0, 1).value());
  auto mm = StageClient::Connect("127.0.0.1", server->port(), other, ClientOpts());
  ASSERT_FALSE(mm.ok());
  EXPECT_NE(mm.status().message().find("model fingerprint mismatch"), std::string::npos)
      << mm.status().message();

  const StageInfo overlap = StageInfoFor(*Model::Load(QwenPath(), 0, 2).value());
  auto ov = StageClient::Connect("127.0.0.1", server->port(), overlap, ClientOpts());
  ASSERT_FALSE(ov.ok());
  EXPECT_NE(ov.status().message().find("layer ranges overlap"), std::string::npos)
      << ov.status().message();

  // The first, authenticated connection still works after the refusals.
  Batch b;
  b.Add(0, 0, 0, true);
  ForwardMsg f;
  f.id = 1;
  f.batch = b;
  f.hidden_dim = 64;
  f.hidden.assign(64, 0.5f);
  auto r = (*ok)->Forward(f);
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_EQ(r->kind, ResultKind::kLogits);
  EXPECT_GE(server->stats().rejected, 3u);
  EXPECT_EQ(server->stats().authenticated, 1u);
}

// Peers that connect and stay silent hold handshake slots, not the server: the real upstream
// still gets in (the oldest pending handshake makes room for a new connection).
TEST(Handshake, IdlePeersCannotLockOutTheUpstream) {
  auto server = StartStage(1, 3);
  ASSERT_NE(server, nullptr);
  const StageInfo head = StageInfoFor(*Model::Load(QwenPath(), 0, 1).value());
  std::vector<std::unique_ptr<Connection>> idle;
  for (int i = 0; i < 20; ++i) {
    auto c = Dial("127.0.0.1", server->port(), 1000);
    ASSERT_TRUE(c.ok()) << c.status().message();
    idle.push_back(std::move(c).value());
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(100));  // all accepted
  const auto t0 = std::chrono::steady_clock::now();
  auto ok = StageClient::Connect("127.0.0.1", server->port(), head, ClientOpts());
  ASSERT_TRUE(ok.ok()) << ok.status().message();
  // Without waiting for the silent peers' handshake timeout (1 s).
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::milliseconds(900));
  for (int i = 0; i < 100 && server->stats().authenticated == 0; ++i)  // counted after Ready
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  EXPECT_EQ(server->stats().authenticated, 1u);
}

// The handshake has one deadline: a peer that sends each frame just within a per-frame timeout
// is still cut off when the whole exchange takes longer.
TEST(Handshake, OneDeadlineForTheWholeHandshake) {
  auto server = StartStage(1, 3);  // handshake_timeout_ms = 1000
  ASSERT_NE(server, nullptr);
  const StageInfo head = StageInfoFor(*Model::Load(QwenPath(), 0, 1).value());
  auto dialed = Dial("127.0.0.1", server->port(), 1000);
  ASSERT_TRUE(dialed.ok());
  Connection& c = **dialed;
  HelloMsg hello;
  hello.nonce = RandomNonce().value();
  std::this_thread::sleep_for(std::chrono::milliseconds(600));
  ASSERT_TRUE(c.WriteFrame(FrameType::kHello, EncodeHello(hello), 1000).ok());
  Frame f;
  ASSERT_TRUE(c.ReadFrame(&f, 4096, 2000).ok());
  ASSERT_EQ(f.type, FrameType::kChallenge);
  const HelloMsg challenge = DecodeHello(f.payload).value();
  std::this_thread::sleep_for(std::chrono::milliseconds(600));  // 1.2 s in all: too late
  AuthMsg auth;
  auth.info = head;
  auth.proof = ComputeProof(kSecret, Role::kClient, hello.nonce, challenge.nonce, head, nullptr);
  (void)c.WriteFrame(FrameType::kAuth, EncodeAuth(auth), 1000);
  const Status st = c.ReadFrame(&f, 4096, 2000);
  EXPECT_TRUE(!st.ok() || f.type == FrameType::kError) << FrameTypeName(f.type);
  EXPECT_EQ(server->stats().authenticated, 0u);
}

// A server that does not know the secret (answers with a bogus proof) is refused by the client.
TEST(Handshake, ClientRefusesServerWithoutSecret) {
  auto listener = Listener::Bind("127.0.0.1", 0).value();
  std::thread fake([&] {
    std::unique_ptr<Connection> c;
    for (int i = 0; i < 50 && !c; ++i) c = std::move(listener->Accept(100)).value();
    if (!c) return;
    Frame f;
    if (!c->ReadFrame(&f, 4096, 2000).ok()) return;
    HelloMsg ch;
    (void)c->WriteFrame(FrameType::kChallenge, EncodeHello(ch), 2000);
    if (!c->ReadFrame(&f, 4096, 2000).ok()) return;
    AuthMsg a = DecodeAuth(f.payload).value();
    std::swap(a.info.first, a.info.last);
    a.info.first = a.info.last;  // pretend to be the adjacent stage
    a.info.last = a.info.n_layers;
    (void)c->WriteFrame(FrameType::kAuth, EncodeAuth(a), 2000);  // proof = the client's
    (void)c->ReadFrame(&f, 4096, 2000);
  });
  const StageInfo head = StageInfoFor(*Model::Load(QwenPath(), 0, 1).value());
  auto r = StageClient::Connect("127.0.0.1", listener->port(), head, ClientOpts());
  fake.join();
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("failed to prove the cluster secret"), std::string::npos)
      << r.status().message();
}

// A hand-driven client: authenticates properly, then misbehaves. Request errors keep the
// connection; a malformed frame ends it (with an Error frame); other clients are unaffected.
TEST(Handshake, AuthenticatedPeerSendingMalformedFramesIsCutOff) {
  auto server = StartStage(1, 3);
  ASSERT_NE(server, nullptr);
  const StageInfo head = StageInfoFor(*Model::Load(QwenPath(), 0, 1).value());
  auto good = StageClient::Connect("127.0.0.1", server->port(), head, ClientOpts());
  ASSERT_TRUE(good.ok()) << good.status().message();

  auto c = Dial("127.0.0.1", server->port(), 1000).value();
  HelloMsg hello;
  hello.nonce = RandomNonce().value();
  ASSERT_TRUE(c->WriteFrame(FrameType::kHello, EncodeHello(hello), 1000).ok());
  Frame f;
  ASSERT_TRUE(c->ReadFrame(&f, 4096, 1000).ok());
  ASSERT_EQ(f.type, FrameType::kChallenge);
  const HelloMsg ch = DecodeHello(f.payload).value();
  AuthMsg auth;
  auth.info = head;
  auth.proof = ComputeProof(kSecret, Role::kClient, hello.nonce, ch.nonce, head, nullptr);
  ASSERT_TRUE(c->WriteFrame(FrameType::kAuth, EncodeAuth(auth), 1000).ok());
  ASSERT_TRUE(c->ReadFrame(&f, 4096, 1000).ok());
  ASSERT_EQ(f.type, FrameType::kAuth);
  const AuthMsg sa = DecodeAuth(f.payload).value();
  EXPECT_TRUE(DigestsEqual(sa.proof, ComputeProof(kSecret, Role::kServer, hello.nonce, ch.nonce,
                                                  head, &sa.info)));
  ASSERT_TRUE(c->WriteFrame(FrameType::kReady, {}, 1000).ok());

  // Token ids sent to a stage that starts at layer 1: a request error, connection kept.
  ForwardMsg m;
  m.id = 5;
  m.batch.Add(1, 0, 1, true);
  ASSERT_TRUE(c->WriteFrame(FrameType::kForward, EncodeForward(m).value(), 1000).ok());
  ASSERT_TRUE(c->ReadFrame(&f, 1 << 20, 5000).ok());
  ASSERT_EQ(f.type, FrameType::kError);
  EXPECT_EQ(DecodeError(f.payload).value().code, ErrorCode::kRequest);
  EXPECT_EQ(DecodeError(f.payload).value().id, 5u);
  // A truncated Forward: protocol error, then the stage closes the connection.
  std::vector<uint8_t> p = EncodeForward(m).value();
  p.pop_back();
  ASSERT_TRUE(c->WriteFrame(FrameType::kForward, p, 1000).ok());
  ASSERT_TRUE(c->ReadFrame(&f, 1 << 20, 5000).ok());
  ASSERT_EQ(f.type, FrameType::kError);
  EXPECT_EQ(DecodeError(f.payload).value().code, ErrorCode::kProtocol);
  Status eof = c->ReadFrame(&f, 1 << 20, 5000);
  EXPECT_FALSE(eof.ok());
  EXPECT_NE(eof.message().find("closed"), std::string::npos) << eof.message();

  ForwardMsg ok;
  ok.id = 6;
  ok.batch.Add(0, 0, 0, true);
  ok.hidden_dim = 64;
  ok.hidden.assign(64, 0.25f);
  auto r = (*good)->Forward(ok);
  EXPECT_TRUE(r.ok()) << r.status().message();
}

// ---- pipelines -------------------------------------------------------------------------

const std::vector<int32_t> kPrompt = {1, 15043, 3186, 29991, 1724, 338};
constexpr int kSteps = 6;

int Argmax(const float* row, int64_t n) {
  return static_cast<int>(std::max_element(row, row + n) - row);
}

// Logits of every step of a greedy generation: step 0 is the prompt's last token, then one
// per generated token. `next` maps the token fed at each step (teacher forcing when given).
struct Trace {
  std::vector<std::vector<float>> logits;
  std::vector<int32_t> tokens;
};

// Runs a greedy generation where each step is computed by `step(batch) -> logits`.
template <typename Step>
Trace Generate(Step step, const std::vector<int32_t>* forced) {
  Trace t;
  Batch b;
  for (size_t i = 0; i < kPrompt.size(); ++i)
    b.Add(kPrompt[i], static_cast<int>(i), 0, i + 1 == kPrompt.size());
  int pos = static_cast<int>(kPrompt.size());
  for (int s = 0; s <= kSteps; ++s) {
    std::vector<float> logits = step(b);
    if (logits.empty()) return t;
    const int tok = Argmax(logits.data(), static_cast<int64_t>(logits.size()));
    t.logits.push_back(std::move(logits));
    t.tokens.push_back(tok);
    b.Clear();
    b.Add(forced ? (*forced)[static_cast<size_t>(s)] : tok, pos++, 0, true);
  }
  return t;
}

Trace SingleModel() {
  auto m = Model::Load(QwenPath()).value();
  auto cache = KvCache::Create(m->config().n_layers, 2, 64, m->config().kv_dim()).value();
  ThreadPool pool(2);
  Forward fwd(*m, &cache, &pool);
  return Generate([&](const Batch& b) {
    std::vector<float> out;
    Status st = fwd.Run(b, nullptr, &out);
    EXPECT_TRUE(st.ok()) << st.message();
    return out;
  }, nullptr);
}

// The head stage: layers [0, k) locally, then the rest through `client`.
class Head {
 public:
  Head(int k, uint16_t port, Activations enc)
      : model_(Model::Load(QwenPath(), 0, k).value()),
        cache_(KvCache::Create(k, 2, 64, model_->config().kv_dim()).value()),
        pool_(2),
        fwd_(*model_, &cache_, &pool_),
        enc_(enc) {
    auto c = StageClient::Connect("127.0.0.1", port, StageInfoFor(*model_), ClientOpts());
    EXPECT_TRUE(c.ok()) << c.status().message();
    if (c.ok()) client_ = std::move(c).value();
  }
  // Logits of the flagged tokens (and, when want_ids, the stage's greedy ids).
  std::vector<float> Step(const Batch& b, std::vector<int32_t>* ids = nullptr) {
    std::vector<float> hidden;
    Status st = fwd_.Run(b, nullptr, &hidden);
    EXPECT_TRUE(st.ok()) << st.message();
    ForwardMsg m;
    m.id = ++id_;
    m.batch = b;
    m.hidden_dim = static_cast<uint32_t>(model_->config().hidden);
    m.encoding = enc_;
    m.flags = enc_ == Activations::kQ8 ? kQ8Hops : 0;
    if (ids) m.flags |= kWantTokenIds;
    m.hidden = std::move(hidden);
    auto r = client_->Forward(m);
    EXPECT_TRUE(r.ok()) << r.status().message();
    if (!r.ok()) return {};
    if (ids) {
      EXPECT_EQ(r->kind, ResultKind::kTokenIds);
      *ids = r->tokens;
      return {};
    }
    EXPECT_EQ(r->kind, ResultKind::kLogits);
    return r->values;
  }
  StageClient* client() { return client_.get(); }

 private:
  std::unique_ptr<Model> model_;
  KvCache cache_;
  ThreadPool pool_;
  Forward fwd_;
  Activations enc_;
  std::unique_ptr<StageClient> client_;
  uint64_t id_ = 0;
};

void ExpectIdentical(const Trace& got, const Trace& want, const std::string& what) {
  ASSERT_EQ(got.logits.size(), want.logits.size()) << what;
  for (size_t s = 0; s < want.logits.size(); ++s) {
    ASSERT_EQ(got.logits[s].size(), want.logits[s].size()) << what;
    EXPECT_EQ(0, std::memcmp(got.logits[s].data(), want.logits[s].data(),
                             want.logits[s].size() * sizeof(float)))
        << what << " step " << s;
  }
  EXPECT_EQ(got.tokens, want.tokens) << what;
}

TEST(Pipeline, TwoStagesAreBitIdentical) {
  const Trace want = SingleModel();
  ASSERT_EQ(want.logits.size(), kSteps + 1u);
  for (int k = 1; k < 3; ++k) {
    auto tail = StartStage(k, 3);
    ASSERT_NE(tail, nullptr);
    Head head(k, tail->port(), Activations::kF32);
    ASSERT_NE(head.client(), nullptr);
    const Trace got = Generate([&](const Batch& b) { return head.Step(b); }, nullptr);
    ExpectIdentical(got, want, "2 stages split at " + std::to_string(k));
    EXPECT_EQ(tail->stats().requests, kSteps + 1u);
  }
}

TEST(Pipeline, ThreeStagesAreBitIdenticalAndReturnTokenIds) {
  const Trace want = SingleModel();
  auto last = StartStage(2, 3);
  ASSERT_NE(last, nullptr);
  auto mid = StartStage(1, 2, last->port());
  ASSERT_NE(mid, nullptr);
  {
    Head head(1, mid->port(), Activations::kF32);
    ASSERT_NE(head.client(), nullptr);
    const Trace got = Generate([&](const Batch& b) { return head.Step(b); }, nullptr);
    ExpectIdentical(got, want, "3 stages");
    ASSERT_TRUE(head.client()->ClearSeqs({0}).ok());
  }
  // Sampled ids instead of logits, on a fresh connection after ClearSeq.
  Head head(1, mid->port(), Activations::kF32);
  ASSERT_NE(head.client(), nullptr);
  std::vector<int32_t> ids;
  Trace got = Generate([&](const Batch& b) {
    head.Step(b, &ids);
    std::vector<float> onehot(32000, 0.0f);  // feeds the returned id back as the argmax
    if (ids.size() == 1 && ids[0] >= 0 && ids[0] < 32000) onehot[static_cast<size_t>(ids[0])] = 1;
    return ids.size() == 1 ? onehot : std::vector<float>();
  }, nullptr);
  EXPECT_EQ(got.tokens, want.tokens);
  // A request error (a position that does not continue the sequence) comes back as a
  // clear error and the pipeline keeps serving.
  Batch bad;
  bad.Add(5, 40, 0, true);
  ForwardMsg m;
  m.id = 99;
  m.batch = bad;
  m.hidden_dim = 64;
  m.hidden.assign(64, 0.1f);
  auto r = head.client()->Forward(m);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("position"), std::string::npos) << r.status().message();
}

TEST(Pipeline, Q8ActivationsAreClose) {
  const Trace want = SingleModel();
  auto last = StartStage(2, 3);
  auto mid = StartStage(1, 2, last->port());
  ASSERT_NE(mid, nullptr);
  Head head(1, mid->port(), Activations::kQ8);
  ASSERT_NE(head.client(), nullptr);
  const uint64_t sent0 = head.client()->bytes_sent();
  // Teacher-forced with the F32 tokens, so every step compares the same context.
  const Trace got = Generate([&](const Batch& b) { return head.Step(b); }, &want.tokens);
  ASSERT_EQ(got.logits.size(), want.logits.size());
  double max_diff = 0, max_abs = 0;
  int agree = 0;
  for (size_t s = 0; s < want.logits.size(); ++s) {
    for (size_t i = 0; i < want.logits[s].size(); ++i) {
      max_diff = std::max(max_diff, std::fabs(static_cast<double>(got.logits[s][i]) - want.logits[s][i]));
      max_abs = std::max(max_abs, std::fabs(static_cast<double>(want.logits[s][i])));
    }
    agree += got.tokens[s] == want.tokens[s];
  }
  std::printf("q8 activations: max |logit diff| %.5f (max |logit| %.3f), top-1 agreement %d/%zu, "
              "%llu bytes sent by the head\n",
              max_diff, max_abs, agree, want.logits.size(),
              static_cast<unsigned long long>(head.client()->bytes_sent() - sent0));
  RecordProperty("q8_max_logit_diff", std::to_string(max_diff));
  RecordProperty("q8_top1_agreement", std::to_string(agree) + "/" + std::to_string(want.logits.size()));
  EXPECT_GT(max_diff, 0.0);                 // q8 really was used
  EXPECT_LT(max_diff, 0.05 * max_abs + 0.05);
  EXPECT_GE(agree, static_cast<int>(want.logits.size()) - 1);
}

// Garbage, oversized, unauthenticated and silent connections to both stage ports while an
// authenticated pipeline generates: they are refused and logged; the pipeline's output stays
// bit-identical.
TEST(Pipeline, GarbageConnectionsDoNotDisturbIt) {
  const Trace want = SingleModel();
  auto last = StartStage(2, 3);
  auto mid = StartStage(1, 2, last->port());
  ASSERT_NE(mid, nullptr);
  Head head(1, mid->port(), Activations::kF32);
  ASSERT_NE(head.client(), nullptr);

  std::atomic<bool> done{false};
  std::atomic<int> attacks{0};
  std::thread attacker([&] {
    std::mt19937 rng(5);
    const StageInfo outsider = StageInfoFor(*Model::Load(QwenPath(), 0, 1).value());
    for (int i = 0; !done || i < 10; ++i) {
      const uint16_t port = i % 2 ? mid->port() : last->port();
      auto c = Dial("127.0.0.1", port, 1000);
      if (!c.ok()) continue;
      Connection& conn = **c;
      switch (i % 5) {
        case 0: {  // random bytes
          std::vector<uint8_t> junk(1 + rng() % 300);
          for (auto& x : junk) x = static_cast<uint8_t>(rng());
          (void)conn.WriteFrame(static_cast<FrameType>(1 + rng() % 8), junk, 500);
          break;
        }
        case 1: {  // a frame over the pre-authentication size limit
          (void)conn.WriteFrame(FrameType::kHello, std::vector<uint8_t>(1 << 16, 7), 500);
          break;
        }
        case 2: {  // a Forward without any handshake
          ForwardMsg m;
          m.batch.Add(1, 0, 0, true);
          (void)conn.WriteFrame(FrameType::kForward, EncodeForward(m).value(), 500);
          break;
        }
        case 3: break;  // connects and says nothing (handshake timeout)
        case 4: {       // a proper client with the wrong secret
          conn.Shutdown();
          auto bad = StageClient::Connect("127.0.0.1", mid->port(), outsider, ClientOpts("guess"));
          EXPECT_FALSE(bad.ok());
          break;
        }
      }
      Frame f;
      if (i % 5 != 4) (void)conn.ReadFrame(&f, 4096, 3000);  // the refusal or the close
      ++attacks;
    }
  });
  const Trace got = Generate([&](const Batch& b) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));  // overlap the attacks
    return head.Step(b);
  }, nullptr);
  done = true;
  attacker.join();
  ExpectIdentical(got, want, "under attack");
  EXPECT_GE(attacks.load(), 10);
  EXPECT_GE(mid->stats().rejected + last->stats().rejected, 10u);
  EXPECT_EQ(mid->stats().authenticated, 1u);
  EXPECT_EQ(last->stats().authenticated, 1u);  // only the middle stage
}

}  // namespace
}  // namespace strata::net
