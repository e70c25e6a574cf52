// Resumable download of one file into FILE.part: continues a partial file with an HTTP Range
// request (206 appends; 200 means the server ignored the range and the file restarts; 416
// means there is nothing left to fetch or the partial file is stale), hashing the bytes with
// SHA-256 as they arrive.
#pragma once

#include <cstdint>
#include <string>

#include "base/status.h"
#include "hub/http_client.h"

namespace strata::hub {

struct FetchResult {
  std::string sha256;            // of the whole .part file, lower-case hex
  uint64_t size = 0;             // bytes in the .part file
  std::string published_sha256;  // from X-Linked-Etag / ETag, empty when none was published
  uint64_t resumed_from = 0;     // bytes kept from an earlier attempt
};

// Downloads `url` into `part` (created or continued). `headers` go with the first request
// (Authorization is dropped on cross-host redirects). `hub` selects hub-flavoured errors.
// `expected_size` (0: unknown) sizes the progress bar and recognises a complete .part on 416.
Result<FetchResult> FetchResumable(const std::string& url, const Headers& headers,
                                   const std::string& part, uint64_t expected_size,
                                   const HttpOptions& http, bool hub, const std::string& label);

// SHA-256 (lower-case hex) of a file.
Result<std::string> Sha256File(const std::string& path);

}  // namespace strata::hub
