#include "http/tls.h"

#include <openssl/ssl.h>

namespace strata::http {

namespace ssl = boost::asio::ssl;

namespace {
// TLS 1.2: forward secrecy and authenticated encryption only. (TLS 1.3 suites are all AEAD;
// OpenSSL's defaults are kept for them.)
constexpr const char* kTls12Ciphers =
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305";
}  // namespace

Result<std::shared_ptr<ssl::context>> MakeServerTls(const std::string& cert_file,
                                                    const std::string& key_file) {
  auto ctx = std::make_shared<ssl::context>(ssl::context::tls_server);
  ctx->set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 |
                   ssl::context::no_sslv3 | ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1 |
                   ssl::context::no_compression | ssl::context::single_dh_use);
  SSL_CTX* raw = ctx->native_handle();
  SSL_CTX_set_min_proto_version(raw, TLS1_2_VERSION);
  SSL_CTX_set_options(raw, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE);
  if (SSL_CTX_set_cipher_list(raw, kTls12Ciphers) != 1)
    return Status::Error("the TLS 1.2 cipher list is not supported by this OpenSSL");
  boost::system::error_code ec;
  ctx->use_certificate_chain_file(cert_file, ec);
  if (ec) return Errorf("tls_cert %s: %s", cert_file.c_str(), ec.message().c_str());
  ctx->use_private_key_file(key_file, ssl::context::pem, ec);
  if (ec) return Errorf("tls_key %s: %s", key_file.c_str(), ec.message().c_str());
  if (SSL_CTX_check_private_key(raw) != 1)
    return Errorf("tls_key %s does not match tls_cert %s", key_file.c_str(), cert_file.c_str());
  return ctx;
}

}  // namespace strata::http
