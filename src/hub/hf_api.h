// The Hugging Face Hub endpoints strata uses (see docs/pull.md for the sources):
//   GET {endpoint}/api/models/{repo}/tree/{revision}?recursive=true   file listing (JSON array
//       of {type, path, size, oid, lfs: {oid, size}}; lfs.oid is the file's SHA-256)
//   GET {endpoint}/{repo}/resolve/{revision}/{path}   the file; usually a 302 to a CDN whose
//       redirect carries X-Linked-Etag (the LFS SHA-256) and X-Linked-Size.
// HF_ENDPOINT replaces the endpoint (mirrors), HF_TOKEN is sent as a Bearer token to it.
#pragma once

#include <string>
#include <vector>

#include "base/status.h"
#include "hub/http_client.h"
#include "hub/ref.h"

namespace strata::hub {

struct HubConfig {
  std::string endpoint = "https://huggingface.co";  // no trailing slash
  std::string token;                                // empty: anonymous
  // From HF_ENDPOINT and HF_TOKEN (HUGGING_FACE_HUB_TOKEN as the older fallback).
  static HubConfig FromEnv();
  // Authorization for requests to the endpoint (empty when there is no token).
  Headers AuthHeaders() const;
};

std::string ResolveUrl(const HubConfig& hub, const std::string& repo, const std::string& revision,
                       const std::string& path);

// Lists the files of a model repository at `revision`.
Result<std::vector<RepoFile>> ListRepoFiles(const HubConfig& hub, const std::string& repo,
                                            const std::string& revision, const HttpOptions& http);

// Parses the JSON of a tree listing (exposed for tests).
Result<std::vector<RepoFile>> ParseTreeListing(const std::string& json);

// "HTTP 404 from URL" with a hint for 401/403/404 on the hub.
std::string HttpStatusError(int status, const std::string& url, bool hub);

}  // namespace strata::hub
