// `strata gateway`: the cluster's front door. An HTTP/1.1 (optionally TLS) server on a
// bounded Asio thread pool that proxies POST /api/inference and the OpenAI endpoints to the
// backends of a cluster.yaml (SSE passed through chunk by chunk), with routing policies,
// active health checks, a circuit breaker, retries and mid-stream failover, admission
// control, API keys with rate limits, a response cache, /health, /ready, /metrics and
// /api/cluster. See docs/gateway.md.
#pragma once

#include "base/status.h"
#include "cluster/config.h"

namespace strata::gateway {

// Serves until SIGINT/SIGTERM. Errors: the listener cannot be bound, the TLS files cannot be
// loaded, the cache cannot be built.
Status RunGateway(const cluster::ClusterConfig& config);

}  // namespace strata::gateway
