#include "net/auth.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

namespace strata::net {
namespace {

// The StageInfo fields in a fixed byte order (the Auth encoding without the proof).
std::vector<uint8_t> InfoBytes(const StageInfo& info) {
  AuthMsg m;
  m.info = info;
  std::vector<uint8_t> b = EncodeAuth(m);
  b.resize(b.size() - kDigestBytes);
  return b;
}

}  // namespace

Digest Sha256(const void* data, size_t n) {
  Digest d{};
  unsigned int len = 0;
  EVP_Digest(data, n, d.data(), &len, EVP_sha256(), nullptr);
  return d;
}

Result<Nonce> RandomNonce() {
  Nonce n{};
  if (RAND_bytes(n.data(), static_cast<int>(n.size())) != 1)
    return Status::Error("the system random number generator failed");
  return n;
}

Digest ComputeProof(const std::string& secret, Role role, const Nonce& client_nonce,
                    const Nonce& server_nonce, const StageInfo& client_info,
                    const StageInfo* server_info) {
  const std::string label =
      role == Role::kClient ? "strata-stage-v1 client" : "strata-stage-v1 server";
  std::vector<uint8_t> msg(label.begin(), label.end());
  msg.push_back(0);
  msg.insert(msg.end(), client_nonce.begin(), client_nonce.end());
  msg.insert(msg.end(), server_nonce.begin(), server_nonce.end());
  const std::vector<uint8_t> ci = InfoBytes(client_info);
  msg.insert(msg.end(), ci.begin(), ci.end());
  if (server_info != nullptr) {
    const std::vector<uint8_t> si = InfoBytes(*server_info);
    msg.insert(msg.end(), si.begin(), si.end());
  }
  Digest d{};
  unsigned int len = 0;
  HMAC(EVP_sha256(), secret.data(), static_cast<int>(secret.size()), msg.data(), msg.size(),
       d.data(), &len);
  return d;
}

bool DigestsEqual(const Digest& a, const Digest& b) {
  return CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

}  // namespace strata::net
