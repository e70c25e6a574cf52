// Server TLS contexts: TLS 1.2 (ECDHE with AEAD ciphers only) and TLS 1.3, renegotiation off.
#pragma once

#include <memory>
#include <string>

#include <boost/asio/ssl.hpp>

#include "base/status.h"

namespace strata::http {

// A server context with the certificate chain and private key of the given PEM files.
// Errors name the file that could not be used.
Result<std::shared_ptr<boost::asio::ssl::context>> MakeServerTls(const std::string& cert_file,
                                                                 const std::string& key_file);

}  // namespace strata::http
