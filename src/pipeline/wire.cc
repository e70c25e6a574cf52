#include "pipeline/wire.h"

#include <utility>

namespace strata::pipeline {
namespace {

// The engine's and the wire's types have the same fields by the same names: each copy below
// serves both directions.

template <typename To, typename From>
To CopySamplerParams(const From& f) {
  To t;
  static_cast<SamplerParams&>(t) = f;
  return t;
}

template <typename To, typename From>
std::vector<To> MoveSamples(std::vector<From>&& from) {
  std::vector<To> to(from.size());
  for (size_t i = 0; i < from.size(); ++i) {
    to[i].reset = from[i].reset;
    to[i].params = CopySamplerParams<decltype(to[i].params)>(from[i].params);
    to[i].accept = std::move(from[i].accept);
    to[i].draft = std::move(from[i].draft);
    to[i].drafted = from[i].drafted;
  }
  return to;
}

template <typename To, typename From>
std::vector<To> CopyKvCopies(const std::vector<From>& from) {
  std::vector<To> to;
  to.reserve(from.size());
  for (const From& c : from) to.push_back({c.src, c.dst, c.n});
  return to;
}

template <typename To>
To MoveBatch(TokenBatch&& from) {
  To to;
  static_cast<TokenBatch&>(to) = std::move(from);
  return to;
}

}  // namespace

net::WireBatch ToWire(Batch&& b) { return MoveBatch<net::WireBatch>(std::move(b)); }
Batch FromWire(net::WireBatch&& w) { return MoveBatch<Batch>(std::move(w)); }

std::vector<net::WireKvCopy> ToWire(const std::vector<KvCopy>& copies) {
  return CopyKvCopies<net::WireKvCopy>(copies);
}
std::vector<KvCopy> FromWire(const std::vector<net::WireKvCopy>& copies) {
  return CopyKvCopies<KvCopy>(copies);
}

std::vector<net::WireSample> ToWire(std::vector<SampleSpec>&& samples) {
  return MoveSamples<net::WireSample>(std::move(samples));
}
std::vector<SampleSpec> FromWire(std::vector<net::WireSample>&& samples) {
  return MoveSamples<SampleSpec>(std::move(samples));
}

}  // namespace strata::pipeline
