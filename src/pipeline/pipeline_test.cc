// Pipeline execution tests: the authenticated handshake against a real StageServer, and whole
// pipelines of 2 and 3 stages over loopback TCP compared bit for bit with a single-model
// forward pass.
#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <random>
#include <thread>

#include "model/testing/tiny_model.h"
#include "net/auth.h"
#include "net/protocol.h"
#include "net/stage_client.h"
#include "net/transport.h"
#include "pipeline/pipeline_head.h"
#include "pipeline/stage_info.h"
#include "pipeline/stage_server.h"
#include "pipeline/wire.h"

namespace strata::pipeline {
namespace {

using namespace ::strata::net;  // NOLINT(google-build-using-namespace)

// ---- models ----------------------------------------------------------------------------

std::string TinyModel(const std::string& arch) {
  strata::testdata::TinyModelSpec s =
      strata::testdata::MiniSpec(arch == "llama" ? "tiny-llama" : "tiny-qwen2");
  s.type = DType::Q8_0;
  s.seed = 11;
  return strata::testdata::TinyModelPath(s, "strata_pipeline_test_" + arch + ".gguf");
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

// The stage info of the tiny Qwen model's layers [first, last).
StageInfo QwenStage(int first, int last) {
  return StageInfoFor(*Model::Load(QwenPath(), first, last).value());
}

// A handshake with a local stage at `port`, as the stage `info`.
Result<std::unique_ptr<StageClient>> ConnectAs(uint16_t port, const StageInfo& info,
                                               const std::string& secret = kSecret) {
  return StageClient::Connect("127.0.0.1", port, info, ClientOpts(secret));
}

TEST(Handshake, FingerprintIsPerFile) {
  auto a = gguf::File::Open(QwenPath()).value();
  auto b = gguf::File::Open(QwenPath()).value();
  auto c = gguf::File::Open(TinyModel("llama")).value();
  EXPECT_EQ(ModelFingerprint(*a), ModelFingerprint(*b));
  EXPECT_NE(ModelFingerprint(*a), ModelFingerprint(*c));
}

// A Forward of one hidden state (64 values of `fill`) for `token` at `pos` of sequence 0,
// its logits wanted.
ForwardMsg HiddenForward(uint64_t id, int32_t token, int32_t pos, float fill) {
  ForwardMsg m;
  m.id = id;
  m.batch.Add(token, pos, 0, true);
  m.hidden_dim = 64;
  m.hidden.assign(64, fill);
  return m;
}

// A stage of layers [1, 3) and the info of its upstream, the head [0, 1).
class StageHandshake : public ::testing::Test {
 protected:
  void SetUp() override {
    server_ = StartStage(1, 3);  // handshake_timeout_ms = 1000
    ASSERT_NE(server_, nullptr);
  }
  std::unique_ptr<StageServer> server_;
  const StageInfo head_ = QwenStage(0, 1);
};

TEST_F(StageHandshake, AcceptsAdjacentRefusesWrongSecretOrModelOrRange) {
  auto ok = ConnectAs(server_->port(), head_);
  ASSERT_TRUE(ok.ok()) << ok.status().message();
  EXPECT_EQ((*ok)->peer().first, 1u);
  EXPECT_EQ((*ok)->peer().last, 3u);

  auto bad = ConnectAs(server_->port(), head_, "wrong secret");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("authentication failed"), std::string::npos)
      << bad.status().message();

  const StageInfo other = StageInfoFor(*Model::Load(TinyModel("llama"), 0, 1).value());
  auto mm = ConnectAs(server_->port(), other);
  ASSERT_FALSE(mm.ok());
  EXPECT_NE(mm.status().message().find("model fingerprint mismatch"), std::string::npos)
      << mm.status().message();

  const StageInfo overlap = QwenStage(0, 2);
  auto ov = ConnectAs(server_->port(), overlap);
  ASSERT_FALSE(ov.ok());
  EXPECT_NE(ov.status().message().find("layer ranges overlap"), std::string::npos)
      << ov.status().message();

  // The first, authenticated connection still works after the refusals.
  auto r = (*ok)->Forward(HiddenForward(1, 0, 0, 0.5f));
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_EQ(r->kind, ResultKind::kLogits);
  EXPECT_GE(server_->stats().rejected, 3u);
  EXPECT_EQ(server_->stats().authenticated, 1u);
}

// Peers that connect and stay silent hold handshake slots, not the server: the real upstream
// still gets in (the oldest pending handshake makes room for a new connection).
TEST_F(StageHandshake, IdlePeersCannotLockOutTheUpstream) {
  std::vector<std::unique_ptr<Connection>> idle;
  for (int i = 0; i < 20; ++i) {
    auto c = Dial("127.0.0.1", server_->port(), 1000);
    ASSERT_TRUE(c.ok()) << c.status().message();
    idle.push_back(std::move(c).value());
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(100));  // all accepted
  const auto t0 = std::chrono::steady_clock::now();
  auto ok = ConnectAs(server_->port(), head_);
  ASSERT_TRUE(ok.ok()) << ok.status().message();
  // Without waiting for the silent peers' handshake timeout (1 s).
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::milliseconds(900));
  for (int i = 0; i < 100 && server_->stats().authenticated == 0; ++i)  // counted after Ready
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  EXPECT_EQ(server_->stats().authenticated, 1u);
}

// The handshake has one deadline: a peer that sends each frame just within a per-frame timeout
// is still cut off when the whole exchange takes longer.
TEST_F(StageHandshake, OneDeadlineForTheWholeHandshake) {
  auto dialed = Dial("127.0.0.1", server_->port(), 1000);
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
  auth.info = head_;
  auth.proof = ComputeProof(kSecret, Role::kClient, hello.nonce, challenge.nonce, head_, nullptr);
  (void)c.WriteFrame(FrameType::kAuth, EncodeAuth(auth), 1000);
  const Status st = c.ReadFrame(&f, 4096, 2000);
  EXPECT_TRUE(!st.ok() || f.type == FrameType::kError) << FrameTypeName(f.type);
  EXPECT_EQ(server_->stats().authenticated, 0u);
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
  const StageInfo head = QwenStage(0, 1);
  auto r = ConnectAs(listener->port(), head);
  fake.join();
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("failed to prove the cluster secret"), std::string::npos)
      << r.status().message();
}

// A hand-driven client: authenticates properly, then misbehaves. Request errors keep the
// connection; a malformed frame ends it (with an Error frame); other clients are unaffected.
TEST_F(StageHandshake, AuthenticatedPeerSendingMalformedFramesIsCutOff) {
  auto good = ConnectAs(server_->port(), head_);
  ASSERT_TRUE(good.ok()) << good.status().message();

  auto c = Dial("127.0.0.1", server_->port(), 1000).value();
  HelloMsg hello;
  hello.nonce = RandomNonce().value();
  ASSERT_TRUE(c->WriteFrame(FrameType::kHello, EncodeHello(hello), 1000).ok());
  Frame f;
  ASSERT_TRUE(c->ReadFrame(&f, 4096, 1000).ok());
  ASSERT_EQ(f.type, FrameType::kChallenge);
  const HelloMsg ch = DecodeHello(f.payload).value();
  AuthMsg auth;
  auth.info = head_;
  auth.proof = ComputeProof(kSecret, Role::kClient, hello.nonce, ch.nonce, head_, nullptr);
  ASSERT_TRUE(c->WriteFrame(FrameType::kAuth, EncodeAuth(auth), 1000).ok());
  ASSERT_TRUE(c->ReadFrame(&f, 4096, 1000).ok());
  ASSERT_EQ(f.type, FrameType::kAuth);
  const AuthMsg sa = DecodeAuth(f.payload).value();
  EXPECT_TRUE(DigestsEqual(
      sa.proof, ComputeProof(kSecret, Role::kServer, hello.nonce, ch.nonce, head_, &sa.info)));
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

  auto r = (*good)->Forward(HiddenForward(6, 0, 0, 0.25f));
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
  return Generate(
      [&](const Batch& b) {
        std::vector<float> out;
        Status st = fwd.Run(b, nullptr, &out);
        EXPECT_TRUE(st.ok()) << st.message();
        return out;
      },
      nullptr);
}

// The head_ stage: layers [0, k) locally, then the rest through `client`.
class Head {
 public:
  Head(int k, uint16_t port, Activations enc)
      : model_(Model::Load(QwenPath(), 0, k).value()),
        cache_(KvCache::Create(k, 2, 64, model_->config().kv_dim()).value()),
        pool_(2),
        fwd_(*model_, &cache_, &pool_),
        enc_(enc) {
    auto c = ConnectAs(port, StageInfoFor(*model_));
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
    m.batch = ToWire(Batch(b));
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

// Stages of layers [1, 2) (mid_) and [2, 3) (last_), chained: a head of layer 0 completes
// the model.
class ThreeStages : public ::testing::Test {
 protected:
  void SetUp() override {
    last_ = StartStage(2, 3);
    ASSERT_NE(last_, nullptr);
    mid_ = StartStage(1, 2, last_->port());
    ASSERT_NE(mid_, nullptr);
  }
  std::unique_ptr<StageServer> last_, mid_;
};

TEST_F(ThreeStages, ThreeStagesAreBitIdenticalAndReturnTokenIds) {
  const Trace want = SingleModel();
  {
    Head head(1, mid_->port(), Activations::kF32);
    ASSERT_NE(head.client(), nullptr);
    const Trace got = Generate([&](const Batch& b) { return head.Step(b); }, nullptr);
    ExpectIdentical(got, want, "3 stages");
    ASSERT_TRUE(head.client()->ClearSeqs({0}).ok());
  }
  // Sampled ids instead of logits, on a fresh connection after ClearSeq.
  Head head(1, mid_->port(), Activations::kF32);
  ASSERT_NE(head.client(), nullptr);
  std::vector<int32_t> ids;
  Trace got = Generate(
      [&](const Batch& b) {
        head.Step(b, &ids);
        std::vector<float> onehot(32000, 0.0f);  // feeds the returned id back as the argmax
        if (ids.size() == 1 && ids[0] >= 0 && ids[0] < 32000)
          onehot[static_cast<size_t>(ids[0])] = 1;
        return ids.size() == 1 ? onehot : std::vector<float>();
      },
      nullptr);
  EXPECT_EQ(got.tokens, want.tokens);
  // A request error (a position that does not continue the sequence) comes back as a
  // clear error and the pipeline keeps serving.
  auto r = head.client()->Forward(HiddenForward(99, 5, 40, 0.1f));
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("position"), std::string::npos) << r.status().message();
}

// The scheduler runs one micro-batch per stage: the head counts them from its next stage's
// range (and the layers left after it).
TEST_F(ThreeStages, HeadCountsTheStages) {
  for (const auto& [head_layers, port, want] :
       {std::tuple{2, last_->port(), 2}, std::tuple{1, mid_->port(), 3}}) {
    auto m = Model::Load(QwenPath(), 0, head_layers);
    ASSERT_TRUE(m.ok()) << m.status().message();
    PipelineHeadOptions o;
    o.next_host = "127.0.0.1";
    o.next_port = port;
    o.link.client = ClientOpts();
    o.n_seq = 2;
    o.n_ctx = 64;
    o.depth = 4;
    auto h = PipelineHead::Start(**m, o);
    ASSERT_TRUE(h.ok()) << h.status().message();
    EXPECT_EQ((*h)->stages(), want) << "head of layers [0, " << head_layers << ")";
    EXPECT_EQ((*h)->depth(), 4);
  }
}

TEST_F(ThreeStages, Q8ActivationsAreClose) {
  const Trace want = SingleModel();
  Head head(1, mid_->port(), Activations::kQ8);
  ASSERT_NE(head.client(), nullptr);
  const uint64_t sent0 = head.client()->bytes_sent();
  // Teacher-forced with the F32 tokens, so every step compares the same context.
  const Trace got = Generate([&](const Batch& b) { return head.Step(b); }, &want.tokens);
  ASSERT_EQ(got.logits.size(), want.logits.size());
  double max_diff = 0, max_abs = 0;
  int agree = 0;
  for (size_t s = 0; s < want.logits.size(); ++s) {
    for (size_t i = 0; i < want.logits[s].size(); ++i) {
      max_diff =
          std::max(max_diff, std::fabs(static_cast<double>(got.logits[s][i]) - want.logits[s][i]));
      max_abs = std::max(max_abs, std::fabs(static_cast<double>(want.logits[s][i])));
    }
    agree += got.tokens[s] == want.tokens[s];
  }
  std::printf(
      "q8 activations: max |logit diff| %.5f (max |logit| %.3f), top-1 agreement %d/%zu, "
      "%llu bytes sent by the head\n",
      max_diff, max_abs, agree, want.logits.size(),
      static_cast<unsigned long long>(head.client()->bytes_sent() - sent0));
  RecordProperty("q8_max_logit_diff", std::to_string(max_diff));
  RecordProperty("q8_top1_agreement",
                 std::to_string(agree) + "/" + std::to_string(want.logits.size()));
  EXPECT_GT(max_diff, 0.0);  // q8 really was used
  EXPECT_LT(max_diff, 0.05 * max_abs + 0.05);
  EXPECT_GE(agree, static_cast<int>(want.logits.size()) - 1);
}

// Garbage, oversized, unauthenticated and silent connections to both stage ports while an
// authenticated pipeline generates: they are refused and logged; the pipeline's output stays
// bit-identical.
TEST_F(ThreeStages, GarbageConnectionsDoNotDisturbIt) {
  const Trace want = SingleModel();
  Head head(1, mid_->port(), Activations::kF32);
  ASSERT_NE(head.client(), nullptr);

  std::atomic<bool> done{false};
  std::atomic<int> attacks{0};
  std::thread attacker([&] {
    std::mt19937 rng(5);
    const StageInfo outsider = QwenStage(0, 1);
    for (int i = 0; !done || i < 10; ++i) {
      const uint16_t port = i % 2 ? mid_->port() : last_->port();
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
          auto bad = ConnectAs(mid_->port(), outsider, "guess");
          EXPECT_FALSE(bad.ok());
          break;
        }
      }
      Frame f;
      if (i % 5 != 4) (void)conn.ReadFrame(&f, 4096, 3000);  // the refusal or the close
      ++attacks;
    }
  });
  const Trace got = Generate(
      [&](const Batch& b) {
        std::this_thread::sleep_for(std::chrono::milliseconds(20));  // overlap the attacks
        return head.Step(b);
      },
      nullptr);
  done = true;
  attacker.join();
  ExpectIdentical(got, want, "under attack");
  EXPECT_GE(attacks.load(), 10);
  EXPECT_GE(mid_->stats().rejected + last_->stats().rejected, 10u);
  EXPECT_EQ(mid_->stats().authenticated, 1u);
  EXPECT_EQ(last_->stats().authenticated, 1u);  // only the middle stage
}

}  // namespace
}  // namespace strata::pipeline
