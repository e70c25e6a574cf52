#include "pipeline/wire.h"

#include <utility>

namespace strata::pipeline {
namespace {

net::WireSamplerParams ToWire(const SamplerParams& p) {
  net::WireSamplerParams w;
  w.temperature = p.temperature;
  w.top_k = p.top_k;
  w.top_p = p.top_p;
  w.min_p = p.min_p;
  w.repeat_penalty = p.repeat_penalty;
  w.presence_penalty = p.presence_penalty;
  w.frequency_penalty = p.frequency_penalty;
  w.penalty_last_n = p.penalty_last_n;
  w.seed = p.seed;
  return w;
}

SamplerParams FromWire(const net::WireSamplerParams& w) {
  SamplerParams p;
  p.temperature = w.temperature;
  p.top_k = w.top_k;
  p.top_p = w.top_p;
  p.min_p = w.min_p;
  p.repeat_penalty = w.repeat_penalty;
  p.presence_penalty = w.presence_penalty;
  p.frequency_penalty = w.frequency_penalty;
  p.penalty_last_n = w.penalty_last_n;
  p.seed = w.seed;
  return p;
}

}  // namespace

net::WireBatch ToWire(Batch&& b) {
  net::WireBatch w;
  w.tokens = std::move(b.tokens);
  w.pos = std::move(b.pos);
  w.seq = std::move(b.seq);
  w.output = std::move(b.output);
  return w;
}

Batch FromWire(net::WireBatch&& w) {
  Batch b;
  b.tokens = std::move(w.tokens);
  b.pos = std::move(w.pos);
  b.seq = std::move(w.seq);
  b.output = std::move(w.output);
  return b;
}

std::vector<net::WireKvCopy> ToWire(const std::vector<KvCopy>& copies) {
  std::vector<net::WireKvCopy> w;
  w.reserve(copies.size());
  for (const KvCopy& c : copies) w.push_back({c.src, c.dst, c.n});
  return w;
}

std::vector<KvCopy> FromWire(const std::vector<net::WireKvCopy>& copies) {
  std::vector<KvCopy> k;
  k.reserve(copies.size());
  for (const net::WireKvCopy& c : copies) k.push_back({c.src, c.dst, c.n});
  return k;
}

std::vector<net::WireSample> ToWire(std::vector<SampleSpec>&& samples) {
  std::vector<net::WireSample> w(samples.size());
  for (size_t i = 0; i < samples.size(); ++i) {
    w[i].reset = samples[i].reset;
    w[i].params = ToWire(samples[i].params);
    w[i].accept = std::move(samples[i].accept);
  }
  return w;
}

std::vector<SampleSpec> FromWire(std::vector<net::WireSample>&& samples) {
  std::vector<SampleSpec> s(samples.size());
  for (size_t i = 0; i < samples.size(); ++i) {
    s[i].reset = samples[i].reset;
    s[i].params = FromWire(samples[i].params);
    s[i].accept = std::move(samples[i].accept);
  }
  return s;
}

}  // namespace strata::pipeline
