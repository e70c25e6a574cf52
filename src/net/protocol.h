// The stage protocol between pipeline stages (docs/stage-protocol.md): length-prefixed,
// little-endian frames over a persistent TCP connection, a versioned handshake carrying the
// model fingerprint and layer ranges, challenge-response HMAC-SHA256 authentication, and the
// Forward / Result / Error / ClearSeq messages. Everything here is pure encoding and
// validation (no I/O): every decoder checks counts against the payload size, overflow-safely,
// and refuses trailing bytes.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "base/sampler_params.h"
#include "base/status.h"
#include "base/token_batch.h"

namespace strata::net {

inline constexpr uint32_t kProtocolVersion = 2;      // 2: sampling at the tail, KV copies, Ping
inline constexpr uint32_t kFrameMagic = 0x31505453;  // bytes "STP1"
inline constexpr size_t kFrameHeaderBytes = 12;      // magic u32, length u32, type u16, flags u16
inline constexpr size_t kDefaultMaxFrameBytes = 64u << 20;
inline constexpr size_t kHandshakeMaxFrameBytes = 4096;  // before authentication
inline constexpr size_t kNonceBytes = 32;
inline constexpr size_t kDigestBytes = 32;  // SHA-256 / HMAC-SHA256
inline constexpr uint32_t kMaxBatchTokens = 1u << 20;
inline constexpr uint32_t kMaxRowLength = 1u << 24;
inline constexpr uint32_t kMaxMessageChars = 4096;
inline constexpr uint32_t kMaxKvCopies = 4096;

enum class FrameType : uint16_t {
  kHello = 1,      // client -> server: version + client nonce
  kChallenge = 2,  // server -> client: version + server nonce
  kAuth = 3,       // both ways: stage info + HMAC proof
  kReady = 4,      // client -> server: handshake complete
  kForward = 5,    // a batch to run
  kResult = 6,     // its result
  kError = 7,      // a refused handshake or a failed request
  kClearSeq = 8,   // clear KV slots (cancel / sequence end); answered by an empty Result
  kPing = 9,       // liveness probe (after the handshake), answered at once by a Pong
  kPong = 10,
};
const char* FrameTypeName(FrameType t);

using Digest = std::array<uint8_t, kDigestBytes>;
using Nonce = std::array<uint8_t, kNonceBytes>;

struct FrameHeader {
  FrameType type = FrameType::kHello;
  uint32_t length = 0;  // payload bytes after the header
};

// header + payload. The payload must not exceed UINT32_MAX bytes.
std::vector<uint8_t> EncodeFrame(FrameType type, const std::vector<uint8_t>& payload);
// Validates magic, flags (must be 0), a known type and length <= max_payload.
Result<FrameHeader> DecodeFrameHeader(const uint8_t* header, size_t max_payload);

// ---- handshake -------------------------------------------------------------------------

struct HelloMsg {  // used for both kHello and kChallenge
  uint32_t version = kProtocolVersion;
  Nonce nonce{};
};
std::vector<uint8_t> EncodeHello(const HelloMsg& m);
Result<HelloMsg> DecodeHello(const std::vector<uint8_t>& payload);

// What a stage serves. [first, last) is its layer range; a pure driver that only sends token
// ids (no layers of its own) uses first == last == 0.
struct StageInfo {
  Digest fingerprint{};  // ModelFingerprint() of the GGUF file
  uint32_t n_layers = 0;
  uint32_t first = 0, last = 0;
  uint32_t hidden = 0;
  uint32_t n_vocab = 0;
  std::string model_name{};  // for messages only (<= kMaxMessageChars)
};

struct AuthMsg {
  StageInfo info;
  Digest proof{};
};
std::vector<uint8_t> EncodeAuth(const AuthMsg& m);
Result<AuthMsg> DecodeAuth(const std::vector<uint8_t>& payload);

// Refuses (with a clear message) an upstream/downstream pair that is not the same model or
// whose ranges are not adjacent ([a, b) followed by [b, c)), overlap or are invalid.
Status CheckAdjacent(const StageInfo& upstream, const StageInfo& downstream);

// First 8 bytes of a digest in hex, for messages.
std::string ShortHex(const Digest& d);

// ---- requests --------------------------------------------------------------------------

// Activation encodings on the wire.
enum class Activations : uint8_t { kF32 = 0, kQ8 = 1 };

// The wire's own view of a batch and its side data. The protocol knows no model: the
// pipeline layer (src/pipeline/wire.h) converts these to and from the engine's types.
struct WireBatch : TokenBatch {};  // tokens: when hidden_dim == 0

// Copy the first n KV positions of slot src into slot dst.
struct WireKvCopy {
  int32_t src = 0, dst = 0, n = 0;
};

// Sampling parameters of a slot (they travel in the order of their declaration).
struct WireSamplerParams : SamplerParams {};

// How the last stage samples one flagged row (see runtime/step.h's SampleSpec).
struct WireSample {
  bool reset = false;           // new sampler with `params`
  WireSamplerParams params;     // used when reset
  std::vector<int32_t> accept;  // tokens (or skip entries) to accept before sampling
  // Speculative decoding: tokens drafted after this row's token (their rows follow it, each
  // marked `drafted`); the last stage verifies them and answers -1 in the rows it rejects.
  std::vector<int32_t> draft;
  bool drafted = false;
};

enum ForwardFlags : uint8_t {
  kWantTokenIds = 1,  // the last stage returns greedy token ids instead of logits
  kQ8Hops = 2,        // every later hop should also send activations as Q8_0
  kSample = 4,        // the last stage samples each flagged row with `samples`, returns ids
  kHasCopies = 8,     // `copies` (KV prefix copies) are applied before the batch
};

struct ForwardMsg {
  uint64_t id = 0;
  uint8_t flags = 0;
  WireBatch batch;          // tokens used when hidden_dim == 0
  uint32_t hidden_dim = 0;  // 0: the batch carries token ids; else hidden states follow
  Activations encoding = Activations::kF32;  // how `hidden` travels
  std::vector<float> hidden;        // [n, hidden_dim] (after decoding a Q8 frame: dequantized)
  std::vector<WireKvCopy> copies;   // sent when flags has kHasCopies
  std::vector<WireSample> samples;  // kSample: one per flagged token, in batch order
};
// Error when the batch arrays differ in length, sizes exceed the limits or hidden does not
// hold n * hidden_dim values.
Result<std::vector<uint8_t>> EncodeForward(const ForwardMsg& m);
Result<ForwardMsg> DecodeForward(const std::vector<uint8_t>& payload);

enum class ResultKind : uint8_t { kNone = 0, kHidden = 1, kLogits = 2, kTokenIds = 3 };

struct ResultMsg {
  uint64_t id = 0;
  ResultKind kind = ResultKind::kNone;
  uint32_t rows = 0, cols = 0;
  Activations encoding = Activations::kF32;  // kHidden only
  std::vector<float> values;                 // kHidden / kLogits: [rows, cols]
  std::vector<int32_t> tokens;               // kTokenIds: [rows]
};
Result<std::vector<uint8_t>> EncodeResult(const ResultMsg& m);
Result<ResultMsg> DecodeResult(const std::vector<uint8_t>& payload);

enum class ErrorCode : uint32_t {
  kProtocol = 1,  // malformed / unexpected frame
  kVersion = 2,
  kAuth = 3,
  kIncompatible = 4,  // fingerprint or layer range
  kRequest = 5,       // the request failed (bad positions, slot out of range, ...)
  kDownstream = 6,    // a later stage failed
  kStale = 7,         // a stage lacks KV positions the batch continues (it restarted)
};

struct ErrorMsg {
  uint64_t id = 0;  // request id, 0 outside requests
  ErrorCode code = ErrorCode::kProtocol;
  std::string message;
};
std::vector<uint8_t> EncodeError(const ErrorMsg& m);  // message truncated to kMaxMessageChars
Result<ErrorMsg> DecodeError(const std::vector<uint8_t>& payload);

struct ClearSeqMsg {
  uint64_t id = 0;
  std::vector<int32_t> seqs;
};
std::vector<uint8_t> EncodeClearSeq(const ClearSeqMsg& m);
Result<ClearSeqMsg> DecodeClearSeq(const std::vector<uint8_t>& payload);

struct PingMsg {  // kPing and kPong
  uint64_t nonce = 0;
};
std::vector<uint8_t> EncodePing(const PingMsg& m);
Result<PingMsg> DecodePing(const std::vector<uint8_t>& payload);

// Q8_0 rows: each row of `cols` values becomes ceil(cols / 32) blocks of an fp16 scale and
// 32 int8 (the last block zero-padded). 34 bytes per block.
size_t Q8RowBytes(uint32_t cols);
void QuantizeRowsQ8(const float* x, uint32_t rows, uint32_t cols, uint8_t* out);
void DequantizeRowsQ8(const uint8_t* in, uint32_t rows, uint32_t cols, float* x);

}  // namespace strata::net
