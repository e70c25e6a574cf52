// Token accounting of the gateway's rate limits: what a finished request is billed.
#pragma once

#include <cstddef>
#include <cstdint>

#include <nlohmann/json.hpp>

namespace strata::gateway {

// The tokens a request is billed once it ran. prompt_tokens / completion_tokens are the
// node's usage (-1: unknown). Ids the client sent in `continue_token_ids` are prompt tokens
// (the node processes them but reports them neither as prompt nor as completion). An unknown
// prompt count falls back to body_bytes / 4; when nothing is known, the estimate reserved at
// admission is billed.
int64_t BilledTokens(const nlohmann::json& body, size_t body_bytes, int64_t prompt_tokens,
                     int64_t completion_tokens, int64_t estimate);

// Whether the client asked for the usage chunk of a stream (stream_options.include_usage).
bool ClientWantsStreamUsage(const nlohmann::json& body);

}  // namespace strata::gateway
