// Cryptographic pieces of the stage handshake (OpenSSL): the model fingerprint, nonces and the
// HMAC-SHA256 challenge-response proofs over the shared cluster secret.
#pragma once

#include <cstddef>
#include <string>

#include "base/status.h"
#include "net/protocol.h"

namespace strata::net {

// SHA-256 of `n` bytes (a model's fingerprint: pipeline/stage_info.h).
Digest Sha256(const void* data, size_t n);

// Cryptographically random bytes. Error when the RNG fails.
Result<Nonce> RandomNonce();

// The proof a side sends: HMAC-SHA256(secret, label || client_nonce || server_nonce ||
// encoded client info [|| encoded server info]). `label` is "strata-stage-v1 client" or
// "... server", so a proof can never be replayed in the other direction; both nonces make it
// fresh; the infos bind the fingerprint and layer ranges to the secret.
enum class Role { kClient, kServer };
Digest ComputeProof(const std::string& secret, Role role, const Nonce& client_nonce,
                    const Nonce& server_nonce, const StageInfo& client_info,
                    const StageInfo* server_info);

// Constant-time comparison.
bool DigestsEqual(const Digest& a, const Digest& b);

}  // namespace strata::net
