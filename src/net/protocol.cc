#include "net/protocol.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <string>

#include "base/fp16.h"

namespace strata::net {
namespace {

// Little-endian append-only encoder.
class Out {
 public:
  void U8(uint8_t v) { buf_.push_back(v); }
  void U16(uint16_t v) { Le(v, 2); }
  void U32(uint32_t v) { Le(v, 4); }
  void U64(uint64_t v) { Le(v, 8); }
  void I32(int32_t v) { U32(static_cast<uint32_t>(v)); }
  void I32s(const std::vector<int32_t>& v) {
    for (int32_t x : v) I32(x);
  }
  void F32(float f) {
    uint32_t u;
    std::memcpy(&u, &f, 4);
    U32(u);
  }
  void Bytes(const uint8_t* p, size_t n) { buf_.insert(buf_.end(), p, p + n); }
  void Str(const std::string& s) {
    const size_t n = std::min<size_t>(s.size(), kMaxMessageChars);
    U32(static_cast<uint32_t>(n));
    Bytes(reinterpret_cast<const uint8_t*>(s.data()), n);
  }
  uint8_t* Grow(size_t n) {
    const size_t at = buf_.size();
    buf_.resize(at + n);
    return buf_.data() + at;
  }
  std::vector<uint8_t> Take() { return std::move(buf_); }
  // One field of a fixed-layout message (the k...Fields lists below).
  void Field(uint32_t v) { U32(v); }
  void Field(uint64_t v) { U64(v); }
  void Field(const std::string& s) { Str(s); }
  void Field(ErrorCode c) { U32(static_cast<uint32_t>(c)); }
  template <size_t N>
  void Field(const std::array<uint8_t, N>& b) {
    Bytes(b.data(), N);
  }
  void Field(const std::vector<int32_t>& v) {  // a count, then the values
    U32(static_cast<uint32_t>(v.size()));
    I32s(v);
  }

 private:
  void Le(uint64_t v, int n) {
    for (int i = 0; i < n; ++i) buf_.push_back(static_cast<uint8_t>(v >> (8 * i)));
  }
  std::vector<uint8_t> buf_;
};

// Bounds-checked little-endian decoder: the first failure sticks and every later read returns 0.
class In {
 public:
  In(const std::vector<uint8_t>& b, const char* what) : p_(b.data()), n_(b.size()), what_(what) {}
  bool ok() const { return ok_; }
  size_t remaining() const { return n_ - at_; }
  uint8_t U8() { return static_cast<uint8_t>(Le(1)); }
  uint16_t U16() { return static_cast<uint16_t>(Le(2)); }
  uint32_t U32() { return static_cast<uint32_t>(Le(4)); }
  uint64_t U64() { return Le(8); }
  int32_t I32() { return static_cast<int32_t>(U32()); }
  // n int32 values; the caller checked n against the remaining bytes (no huge allocation).
  std::vector<int32_t> I32s(size_t n) {
    std::vector<int32_t> v(n);
    for (int32_t& x : v) x = I32();
    return v;
  }
  float F32() {
    const uint32_t u = U32();
    float f;
    std::memcpy(&f, &u, 4);
    return f;
  }
  const uint8_t* Bytes(size_t n) {
    if (!ok_ || n > remaining()) {
      ok_ = false;
      return nullptr;
    }
    const uint8_t* r = p_ + at_;
    at_ += n;
    return r;
  }
  std::string Str() {
    const uint32_t n = U32();
    if (n > kMaxMessageChars) {
      ok_ = false;
      return {};
    }
    const uint8_t* b = Bytes(n);
    return b ? std::string(reinterpret_cast<const char*>(b), n) : std::string();
  }
  // The decoding counterparts of Out::Field.
  void Field(uint32_t& v) { v = U32(); }
  void Field(uint64_t& v) { v = U64(); }
  void Field(std::string& s) { s = Str(); }
  void Field(ErrorCode& c) {
    const uint32_t v = U32();
    if (ok_ && (v < 1 || v > static_cast<uint32_t>(ErrorCode::kStale)))
      Fail(StrFormat("unknown code %u", v));
    c = static_cast<ErrorCode>(v);
  }
  template <size_t N>
  void Field(std::array<uint8_t, N>& b) {
    if (const uint8_t* p = Bytes(N)) std::memcpy(b.data(), p, N);
  }
  void Field(std::vector<int32_t>& v) {
    const uint32_t n = U32();
    if (ok_ && uint64_t{n} * 4 > remaining())
      Fail(StrFormat("%u values do not fit in %zu payload bytes", n, remaining()));
    v = I32s(ok_ ? n : 0);
  }
  // Stops decoding with a message that says why (Finish reports it).
  void Fail(std::string why) {
    ok_ = false;
    why_ = std::move(why);
  }
  // Error unless everything was read exactly.
  Status Finish() const {
    if (!why_.empty()) return Errorf("%s: %s", what_, why_.c_str());
    if (!ok_) return Errorf("malformed %s message: truncated or a field out of range", what_);
    if (at_ != n_) return Errorf("malformed %s message: %zu trailing bytes", what_, n_ - at_);
    return Status::Ok();
  }

 private:
  uint64_t Le(int n) {
    if (!ok_ || static_cast<size_t>(n) > remaining()) {
      ok_ = false;
      return 0;
    }
    uint64_t v = 0;
    for (int i = 0; i < n; ++i) v |= static_cast<uint64_t>(p_[at_ + i]) << (8 * i);
    at_ += static_cast<size_t>(n);
    return v;
  }
  const uint8_t* p_;
  size_t n_, at_ = 0;
  bool ok_ = true;
  const char* what_;
  std::string why_;
};

// The fixed-layout messages, each as one list of its fields in wire order that serves both
// directions: io is an Out (encoding, m const) or an In (decoding).
constexpr auto kHelloFields = [](auto& io, auto& m) {
  io.Field(m.version);
  io.Field(m.nonce);
};
constexpr auto kAuthFields = [](auto& io, auto& m) {
  io.Field(m.info.fingerprint);
  io.Field(m.info.n_layers);
  io.Field(m.info.first);
  io.Field(m.info.last);
  io.Field(m.info.hidden);
  io.Field(m.info.n_vocab);
  io.Field(m.info.model_name);
  io.Field(m.proof);
};
constexpr auto kErrorFields = [](auto& io, auto& m) {
  io.Field(m.id);
  io.Field(m.code);
  io.Field(m.message);
};
constexpr auto kClearSeqFields = [](auto& io, auto& m) {
  io.Field(m.id);
  io.Field(m.seqs);
};
constexpr auto kPingFields = [](auto& io, auto& m) { io.Field(m.nonce); };

template <class M, class Fields>
std::vector<uint8_t> EncodeFields(const M& m, Fields fields) {
  Out o;
  fields(o, m);
  return o.Take();
}

template <class M, class Fields>
Result<M> DecodeFields(const std::vector<uint8_t>& payload, const char* what, Fields fields) {
  In in(payload, what);
  M m;
  fields(in, m);
  STRATA_RETURN_IF_ERROR(in.Finish());
  return m;
}

void PutFloats(Out& o, const float* x, size_t n) {
  uint8_t* d = o.Grow(n * 4);
  for (size_t i = 0; i < n; ++i) {
    const uint32_t u = f32_to_bits(x[i]);
    d[4 * i] = static_cast<uint8_t>(u);
    d[4 * i + 1] = static_cast<uint8_t>(u >> 8);
    d[4 * i + 2] = static_cast<uint8_t>(u >> 16);
    d[4 * i + 3] = static_cast<uint8_t>(u >> 24);
  }
}

bool GetFloats(In& in, size_t n, std::vector<float>* out) {
  const uint8_t* d = in.Bytes(n * 4);
  if (d == nullptr) return false;
  out->resize(n);
  for (size_t i = 0; i < n; ++i) {
    const uint32_t u = static_cast<uint32_t>(d[4 * i]) | static_cast<uint32_t>(d[4 * i + 1]) << 8 |
                       static_cast<uint32_t>(d[4 * i + 2]) << 16 |
                       static_cast<uint32_t>(d[4 * i + 3]) << 24;
    (*out)[i] = bits_to_f32(u);
  }
  return true;
}

// Activations [rows, cols] in `enc`: bytes they take, or 0 when out of the limits.
uint64_t ActivationBytes(uint32_t rows, uint32_t cols, Activations enc) {
  if (rows > kMaxBatchTokens || cols > kMaxRowLength) return 0;
  const uint64_t row = enc == Activations::kQ8 ? Q8RowBytes(cols) : static_cast<uint64_t>(cols) * 4;
  return row * rows;  // <= 2^20 * 2^24 * 4: no overflow
}

void PutActivations(Out& o, const float* x, uint32_t rows, uint32_t cols, Activations enc) {
  if (enc == Activations::kQ8) {
    QuantizeRowsQ8(x, rows, cols, o.Grow(Q8RowBytes(cols) * rows));
  } else {
    PutFloats(o, x, static_cast<size_t>(rows) * cols);
  }
}

bool GetActivations(In& in, uint32_t rows, uint32_t cols, Activations enc,
                    std::vector<float>* out) {
  const uint64_t bytes = ActivationBytes(rows, cols, enc);
  if (bytes > in.remaining()) return false;
  if (enc == Activations::kQ8) {
    const uint8_t* d = in.Bytes(bytes);
    if (d == nullptr) return false;
    out->resize(static_cast<size_t>(rows) * cols);
    DequantizeRowsQ8(d, rows, cols, out->data());
    return true;
  }
  return GetFloats(in, static_cast<size_t>(rows) * cols, out);
}

bool ValidEncoding(uint8_t e) { return e <= static_cast<uint8_t>(Activations::kQ8); }

size_t FlaggedRows(const WireBatch& b) {
  size_t n = 0;
  for (uint8_t f : b.output) n += f ? 1 : 0;
  return n;
}

bool FiniteParams(const WireSamplerParams& p) {
  return std::isfinite(p.temperature) && std::isfinite(p.top_p) && std::isfinite(p.min_p) &&
         std::isfinite(p.repeat_penalty) && std::isfinite(p.presence_penalty) &&
         std::isfinite(p.frequency_penalty);
}

// A sampling row's first byte: which of its parts follow (a draft) and what it is.
enum RowFlags : uint8_t { kRowReset = 1, kRowDrafted = 2, kRowHasDraft = 4 };

uint8_t SampleFlags(const WireSample& s) {
  return static_cast<uint8_t>((s.reset ? kRowReset : 0) | (s.drafted ? kRowDrafted : 0) |
                              (s.draft.empty() ? 0 : kRowHasDraft));
}

// The optional trailing sections of a Forward: KV copies, then the sampling rows.
Status PutSections(Out& o, const ForwardMsg& m) {
  if (!(m.flags & kHasCopies) && !m.copies.empty())
    return Status::Error("Forward: KV copies without the kHasCopies flag");
  if (!(m.flags & kSample) && !m.samples.empty())
    return Status::Error("Forward: sampling rows without the kSample flag");
  if (m.flags & kHasCopies) {
    if (m.copies.size() > kMaxKvCopies)
      return Errorf("Forward: %zu KV copies (at most %u)", m.copies.size(), kMaxKvCopies);
    o.U32(static_cast<uint32_t>(m.copies.size()));
    for (const WireKvCopy& c : m.copies) {
      o.I32(c.src);
      o.I32(c.dst);
      o.I32(c.n);
    }
  }
  if (m.flags & kSample) {
    if (m.samples.size() != FlaggedRows(m.batch))
      return Errorf("Forward: %zu sampling rows for %zu flagged tokens", m.samples.size(),
                    FlaggedRows(m.batch));
    for (const WireSample& s : m.samples) {
      o.U8(SampleFlags(s));
      if (s.reset) {
        const WireSamplerParams& p = s.params;
        if (!FiniteParams(p)) return Status::Error("Forward: non-finite sampler parameter");
        o.F32(p.temperature);
        o.I32(p.top_k);
        o.F32(p.top_p);
        o.F32(p.min_p);
        o.F32(p.repeat_penalty);
        o.F32(p.presence_penalty);
        o.F32(p.frequency_penalty);
        o.I32(p.penalty_last_n);
        o.U64(p.seed);
      }
      if (s.accept.size() > kMaxBatchTokens)
        return Status::Error("Forward: too many accepted tokens");
      o.U32(static_cast<uint32_t>(s.accept.size()));
      o.I32s(s.accept);
      if (!s.draft.empty()) {
        if (s.draft.size() > kMaxBatchTokens) return Status::Error("Forward: draft too long");
        o.U32(static_cast<uint32_t>(s.draft.size()));
        o.I32s(s.draft);
      }
    }
  }
  return Status::Ok();
}

Status GetSections(In& in, ForwardMsg* m) {
  if (m->flags & kHasCopies) {
    const uint32_t n = in.U32();
    if (!in.ok()) return in.Finish();
    if (n > kMaxKvCopies || uint64_t{n} * 12 > in.remaining())
      return Errorf("Forward: %u KV copies do not fit the payload", n);
    m->copies.resize(n);
    for (WireKvCopy& c : m->copies) {
      c.src = in.I32();
      c.dst = in.I32();
      c.n = in.I32();
    }
  }
  if (m->flags & kSample) {
    const size_t rows = FlaggedRows(m->batch);
    if (rows > in.remaining())
      return Status::Error("Forward: sampling rows do not fit the payload");
    m->samples.resize(rows);
    for (WireSample& s : m->samples) {
      const uint8_t flags = in.U8();
      if (flags & ~(kRowReset | kRowDrafted | kRowHasDraft))
        return Errorf("Forward: unknown sampling row flags 0x%02x", flags);
      s.reset = (flags & kRowReset) != 0;
      s.drafted = (flags & kRowDrafted) != 0;
      if (s.reset) {
        WireSamplerParams& p = s.params;
        p.temperature = in.F32();
        p.top_k = in.I32();
        p.top_p = in.F32();
        p.min_p = in.F32();
        p.repeat_penalty = in.F32();
        p.presence_penalty = in.F32();
        p.frequency_penalty = in.F32();
        p.penalty_last_n = in.I32();
        p.seed = in.U64();
        if (in.ok() && !FiniteParams(p))
          return Status::Error("Forward: non-finite sampler parameter");
      }
      const uint32_t na = in.U32();
      if (!in.ok()) return in.Finish();
      if (na > kMaxBatchTokens || uint64_t{na} * 4 > in.remaining())
        return Errorf("Forward: %u accepted tokens do not fit the payload", na);
      s.accept = in.I32s(na);
      if (flags & kRowHasDraft) {
        const uint32_t nd = in.U32();
        if (!in.ok()) return in.Finish();
        if (nd == 0 || nd > kMaxBatchTokens || uint64_t{nd} * 4 > in.remaining())
          return Errorf("Forward: a draft of %u tokens does not fit the payload", nd);
        s.draft = in.I32s(nd);
      }
    }
  }
  return Status::Ok();
}

}  // namespace

const char* FrameTypeName(FrameType t) {
  switch (t) {
    case FrameType::kHello: return "Hello";
    case FrameType::kChallenge: return "Challenge";
    case FrameType::kAuth: return "Auth";
    case FrameType::kReady: return "Ready";
    case FrameType::kForward: return "Forward";
    case FrameType::kResult: return "Result";
    case FrameType::kError: return "Error";
    case FrameType::kClearSeq: return "ClearSeq";
    case FrameType::kPing: return "Ping";
    case FrameType::kPong: return "Pong";
  }
  return "?";
}

std::vector<uint8_t> EncodeFrame(FrameType type, const std::vector<uint8_t>& payload) {
  Out o;
  o.U32(kFrameMagic);
  o.U32(static_cast<uint32_t>(payload.size()));
  o.U16(static_cast<uint16_t>(type));
  o.U16(0);
  std::vector<uint8_t> f = o.Take();
  f.insert(f.end(), payload.begin(), payload.end());
  return f;
}

Result<FrameHeader> DecodeFrameHeader(const uint8_t* h, size_t max_payload) {
  const std::vector<uint8_t> b(h, h + kFrameHeaderBytes);
  In in(b, "frame header");
  const uint32_t magic = in.U32();
  const uint32_t length = in.U32();
  const uint16_t type = in.U16();
  const uint16_t flags = in.U16();
  if (magic != kFrameMagic)
    return Errorf("bad frame magic 0x%08x (not a stage protocol peer?)", magic);
  if (flags != 0) return Errorf("bad frame flags 0x%04x", flags);
  if (type < static_cast<uint16_t>(FrameType::kHello) ||
      type > static_cast<uint16_t>(FrameType::kPong))
    return Errorf("unknown frame type %u", type);
  if (length > max_payload)
    return Errorf("%s frame of %u bytes exceeds the limit of %zu bytes",
                  FrameTypeName(static_cast<FrameType>(type)), length, max_payload);
  return FrameHeader{static_cast<FrameType>(type), length};
}

std::vector<uint8_t> EncodeHello(const HelloMsg& m) { return EncodeFields(m, kHelloFields); }

Result<HelloMsg> DecodeHello(const std::vector<uint8_t>& payload) {
  return DecodeFields<HelloMsg>(payload, "Hello", kHelloFields);
}

std::vector<uint8_t> EncodeAuth(const AuthMsg& m) { return EncodeFields(m, kAuthFields); }

Result<AuthMsg> DecodeAuth(const std::vector<uint8_t>& payload) {
  return DecodeFields<AuthMsg>(payload, "Auth", kAuthFields);
}

std::string ShortHex(const Digest& d) {
  std::string s;
  for (int i = 0; i < 8; ++i) s += StrFormat("%02x", d[static_cast<size_t>(i)]);
  return s;
}

Status CheckAdjacent(const StageInfo& up, const StageInfo& down) {
  if (up.fingerprint != down.fingerprint)
    return Errorf(
        "model fingerprint mismatch: upstream stage serves '%s' (fingerprint %s), "
        "downstream stage serves '%s' (fingerprint %s); all stages must load the same "
        "GGUF file",
        up.model_name.c_str(), ShortHex(up.fingerprint).c_str(), down.model_name.c_str(),
        ShortHex(down.fingerprint).c_str());
  if (up.n_layers != down.n_layers || up.hidden != down.hidden || up.n_vocab != down.n_vocab)
    return Errorf(
        "model shape mismatch: upstream has %u layers / hidden %u / vocab %u, "
        "downstream %u / %u / %u",
        up.n_layers, up.hidden, up.n_vocab, down.n_layers, down.hidden, down.n_vocab);
  const bool up_driver = up.first == 0 && up.last == 0;
  if (!up_driver && (up.first >= up.last || up.last > up.n_layers))
    return Errorf("invalid upstream layer range [%u, %u) of %u layers", up.first, up.last,
                  up.n_layers);
  if (down.first >= down.last || down.last > down.n_layers)
    return Errorf("invalid downstream layer range [%u, %u) of %u layers", down.first, down.last,
                  down.n_layers);
  if (up.last > down.first && up.first < down.last)
    return Errorf("layer ranges overlap: upstream serves [%u, %u), downstream serves [%u, %u)",
                  up.first, up.last, down.first, down.last);
  if (up.last != down.first)
    return Errorf(
        "layer ranges are not adjacent: upstream serves [%u, %u) but downstream "
        "starts at layer %u (expected %u)",
        up.first, up.last, down.first, up.last);
  return Status::Ok();
}

Result<std::vector<uint8_t>> EncodeForward(const ForwardMsg& m) {
  const WireBatch& b = m.batch;
  const size_t n = b.pos.size();
  if (n == 0 || n > kMaxBatchTokens)
    return Errorf("batch of %zu tokens (1..%u allowed)", n, kMaxBatchTokens);
  if (b.seq.size() != n || b.output.size() != n || (m.hidden_dim == 0 && b.tokens.size() != n))
    return Status::Error("batch arrays differ in length");
  if (m.hidden_dim > kMaxRowLength) return Errorf("hidden size %u too large", m.hidden_dim);
  if (m.hidden_dim != 0 && m.hidden.size() != n * m.hidden_dim)
    return Errorf("hidden states hold %zu values, expected %zu x %u", m.hidden.size(), n,
                  m.hidden_dim);
  Out o;
  o.U64(m.id);
  o.U8(m.flags);
  o.U8(static_cast<uint8_t>(m.encoding));
  o.U32(static_cast<uint32_t>(n));
  o.U32(m.hidden_dim);
  o.I32s(b.pos);
  o.I32s(b.seq);
  for (uint8_t f : b.output) o.U8(f ? 1 : 0);
  if (m.hidden_dim == 0) {
    o.I32s(b.tokens);
  } else {
    PutActivations(o, m.hidden.data(), static_cast<uint32_t>(n), m.hidden_dim, m.encoding);
  }
  STRATA_RETURN_IF_ERROR(PutSections(o, m));
  return o.Take();
}

Result<ForwardMsg> DecodeForward(const std::vector<uint8_t>& payload) {
  In in(payload, "Forward");
  ForwardMsg m;
  m.id = in.U64();
  m.flags = in.U8();
  const uint8_t enc = in.U8();
  const uint32_t n = in.U32();
  m.hidden_dim = in.U32();
  if (!in.ok()) return in.Finish();
  if (m.flags & ~(kWantTokenIds | kQ8Hops | kSample | kHasCopies))
    return Errorf("Forward: unknown flags 0x%02x", m.flags);
  if (!ValidEncoding(enc)) return Errorf("Forward: unknown activation encoding %u", enc);
  m.encoding = static_cast<Activations>(enc);
  if (n == 0 || n > kMaxBatchTokens)
    return Errorf("Forward: batch of %u tokens (1..%u allowed)", n, kMaxBatchTokens);
  if (m.hidden_dim > kMaxRowLength)
    return Errorf("Forward: hidden size %u too large", m.hidden_dim);
  // Fixed per-token arrays: pos, seq (4 + 4 bytes) and output (1 byte).
  const uint64_t body =
      m.hidden_dim == 0 ? uint64_t{n} * 4 : ActivationBytes(n, m.hidden_dim, m.encoding);
  const bool sections = (m.flags & (kSample | kHasCopies)) != 0;
  const uint64_t want = uint64_t{n} * 9 + body;
  if (sections ? want > in.remaining() : want != in.remaining())
    return Errorf("Forward: payload of %zu bytes does not match %u tokens (expected %llu)",
                  in.remaining(), n, static_cast<unsigned long long>(want));
  m.batch.pos = in.I32s(n);
  m.batch.seq = in.I32s(n);
  m.batch.output.resize(n);
  for (uint32_t i = 0; i < n; ++i) {
    const uint8_t f = in.U8();
    if (f > 1) return Errorf("Forward: output flag %u is not 0 or 1", f);
    m.batch.output[i] = f;
  }
  if (m.hidden_dim == 0) {
    m.batch.tokens = in.I32s(n);
  } else {
    m.batch.tokens.assign(n, 0);
    if (!GetActivations(in, n, m.hidden_dim, m.encoding, &m.hidden)) return in.Finish();
    for (float v : m.hidden)
      if (!std::isfinite(v)) return Status::Error("Forward: non-finite hidden state");
  }
  STRATA_RETURN_IF_ERROR(GetSections(in, &m));
  STRATA_RETURN_IF_ERROR(in.Finish());
  return m;
}

// The rules of a result's header (kind, encoding and shape), the same in both directions.
Status CheckResultHeader(const ResultMsg& m) {
  if (m.rows > kMaxBatchTokens || m.cols > kMaxRowLength) return Status::Error("shape too large");
  switch (m.kind) {
    case ResultKind::kNone:
      if (m.rows != 0 || m.cols != 0) return Status::Error("empty result with a shape");
      break;
    case ResultKind::kHidden: break;
    case ResultKind::kLogits:
      if (m.encoding != Activations::kF32) return Status::Error("logits must be F32");
      break;
    case ResultKind::kTokenIds:
      if (m.cols != 1) return Status::Error("token ids come one per row");
      break;
  }
  return Status::Ok();
}

Result<std::vector<uint8_t>> EncodeResult(const ResultMsg& m) {
  if (Status st = CheckResultHeader(m); !st.ok()) return st.With("result");
  const size_t nv = static_cast<size_t>(m.rows) * m.cols;
  const bool rows = m.kind == ResultKind::kHidden || m.kind == ResultKind::kLogits;
  if (rows && m.values.size() != nv)
    return Errorf("result holds %zu values, expected %zu", m.values.size(), nv);
  if (m.kind == ResultKind::kTokenIds && m.tokens.size() != m.rows)
    return Errorf("result holds %zu token ids, expected %u", m.tokens.size(), m.rows);
  Out o;
  o.U64(m.id);
  o.U8(static_cast<uint8_t>(m.kind));
  o.U8(static_cast<uint8_t>(m.encoding));
  o.U32(m.rows);
  o.U32(m.cols);
  if (rows) PutActivations(o, m.values.data(), m.rows, m.cols, m.encoding);
  if (m.kind == ResultKind::kTokenIds) o.I32s(m.tokens);
  return o.Take();
}

Result<ResultMsg> DecodeResult(const std::vector<uint8_t>& payload) {
  In in(payload, "Result");
  ResultMsg m;
  m.id = in.U64();
  const uint8_t kind = in.U8();
  const uint8_t enc = in.U8();
  m.rows = in.U32();
  m.cols = in.U32();
  if (!in.ok()) return in.Finish();
  if (kind > static_cast<uint8_t>(ResultKind::kTokenIds))
    return Errorf("Result: unknown kind %u", kind);
  if (!ValidEncoding(enc)) return Errorf("Result: unknown encoding %u", enc);
  m.kind = static_cast<ResultKind>(kind);
  m.encoding = static_cast<Activations>(enc);
  if (Status st = CheckResultHeader(m); !st.ok()) return st.With("Result");
  if (m.kind == ResultKind::kHidden || m.kind == ResultKind::kLogits) {
    if (ActivationBytes(m.rows, m.cols, m.encoding) != in.remaining())
      return Errorf("Result: payload of %zu bytes does not match [%u, %u]", in.remaining(), m.rows,
                    m.cols);
    if (!GetActivations(in, m.rows, m.cols, m.encoding, &m.values)) return in.Finish();
  } else if (m.kind == ResultKind::kTokenIds) {
    if (uint64_t{m.rows} * 4 != in.remaining())
      return Errorf("Result: token ids payload of %zu bytes does not match %u rows", in.remaining(),
                    m.rows);
    m.tokens = in.I32s(m.rows);
  }
  STRATA_RETURN_IF_ERROR(in.Finish());
  return m;
}

std::vector<uint8_t> EncodeError(const ErrorMsg& m) { return EncodeFields(m, kErrorFields); }

Result<ErrorMsg> DecodeError(const std::vector<uint8_t>& payload) {
  return DecodeFields<ErrorMsg>(payload, "Error", kErrorFields);
}

std::vector<uint8_t> EncodeClearSeq(const ClearSeqMsg& m) {
  return EncodeFields(m, kClearSeqFields);
}

Result<ClearSeqMsg> DecodeClearSeq(const std::vector<uint8_t>& payload) {
  return DecodeFields<ClearSeqMsg>(payload, "ClearSeq", kClearSeqFields);
}

std::vector<uint8_t> EncodePing(const PingMsg& m) { return EncodeFields(m, kPingFields); }

Result<PingMsg> DecodePing(const std::vector<uint8_t>& payload) {
  return DecodeFields<PingMsg>(payload, "Ping", kPingFields);
}

size_t Q8RowBytes(uint32_t cols) { return (static_cast<size_t>(cols) + 31) / 32 * 34; }

void QuantizeRowsQ8(const float* x, uint32_t rows, uint32_t cols, uint8_t* out) {
  const size_t nb = (static_cast<size_t>(cols) + 31) / 32;
  for (uint32_t r = 0; r < rows; ++r) {
    const float* row = x + static_cast<size_t>(r) * cols;
    for (size_t b = 0; b < nb; ++b) {
      uint8_t* blk = out + (static_cast<size_t>(r) * nb + b) * 34;
      const size_t lo = b * 32, hi = std::min<size_t>(lo + 32, cols);
      float amax = 0;
      for (size_t i = lo; i < hi; ++i) amax = std::max(amax, std::fabs(row[i]));
      const float d = amax / 127.0f;
      const float id = d > 0 ? 1.0f / d : 0.0f;
      const uint16_t dh = f32_to_fp16(d);
      blk[0] = static_cast<uint8_t>(dh);
      blk[1] = static_cast<uint8_t>(dh >> 8);
      for (size_t i = 0; i < 32; ++i) {
        const float v = lo + i < hi ? row[lo + i] * id : 0.0f;
        const long q = std::lround(std::clamp(v, -127.0f, 127.0f));
        blk[2 + i] = static_cast<uint8_t>(static_cast<int8_t>(q));
      }
    }
  }
}

void DequantizeRowsQ8(const uint8_t* in, uint32_t rows, uint32_t cols, float* x) {
  const size_t nb = (static_cast<size_t>(cols) + 31) / 32;
  for (uint32_t r = 0; r < rows; ++r) {
    float* row = x + static_cast<size_t>(r) * cols;
    for (size_t b = 0; b < nb; ++b) {
      const uint8_t* blk = in + (static_cast<size_t>(r) * nb + b) * 34;
      const float d = fp16_to_f32(static_cast<uint16_t>(blk[0] | blk[1] << 8));
      const size_t lo = b * 32, hi = std::min<size_t>(lo + 32, cols);
      for (size_t i = lo; i < hi; ++i) row[i] = d * static_cast<int8_t>(blk[2 + i - lo]);
    }
  }
}

}  // namespace strata::net
