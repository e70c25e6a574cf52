// The thin conversion between the stage protocol's wire types (net/protocol.h) and the
// engine's (model/forward.h's Batch, runtime/step.h's KvCopy and SampleSpec). The fields match
// one to one; the rvalue overloads move the vectors instead of copying them.
#pragma once

#include <vector>

#include "model/forward.h"
#include "net/protocol.h"
#include "runtime/step.h"

namespace strata::pipeline {

net::WireBatch ToWire(Batch&& b);
Batch FromWire(net::WireBatch&& b);

std::vector<net::WireKvCopy> ToWire(const std::vector<KvCopy>& copies);
std::vector<KvCopy> FromWire(const std::vector<net::WireKvCopy>& copies);

std::vector<net::WireSample> ToWire(std::vector<SampleSpec>&& samples);
std::vector<SampleSpec> FromWire(std::vector<net::WireSample>&& samples);

}  // namespace strata::pipeline
