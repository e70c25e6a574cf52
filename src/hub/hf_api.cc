#include "hub/hf_api.h"

#include <cstdlib>

#include <nlohmann/json.hpp>

namespace strata::hub {

HubConfig HubConfig::FromEnv() {
  HubConfig h;
  if (const char* e = std::getenv("HF_ENDPOINT"); e && *e) h.endpoint = e;
  while (!h.endpoint.empty() && h.endpoint.back() == '/') h.endpoint.pop_back();
  if (const char* t = std::getenv("HF_TOKEN"); t && *t) {
    h.token = t;
  } else if (const char* o = std::getenv("HUGGING_FACE_HUB_TOKEN"); o && *o) {
    h.token = o;
  }
  return h;
}

Headers HubConfig::AuthHeaders() const {
  Headers h;
  if (!token.empty()) h["Authorization"] = "Bearer " + token;
  return h;
}

std::string ResolveUrl(const HubConfig& hub, const std::string& repo, const std::string& revision,
                       const std::string& path) {
  return hub.endpoint + "/" + repo + "/resolve/" + revision + "/" + path;
}

std::string HttpStatusError(int status, const std::string& url, bool hub) {
  std::string m = StrFormat("HTTP %d from %s", status, url.c_str());
  if (hub && (status == 401 || status == 403))
    m += " (gated or private repository: set HF_TOKEN to a token with access)";
  else if (hub && status == 404)
    m += " (no such repository, revision or file; check the reference, or HF_TOKEN for "
         "private repositories)";
  return m;
}

Result<std::vector<RepoFile>> ParseTreeListing(const std::string& text) {
  nlohmann::json j = nlohmann::json::parse(text, nullptr, false);
  if (j.is_discarded() || !j.is_array())
    return Status::Error("the hub's file listing is not a JSON array");
  std::vector<RepoFile> out;
  for (const auto& e : j) {
    if (!e.is_object() || e.value("type", std::string("file")) != "file") continue;
    if (!e.contains("path") || !e["path"].is_string()) continue;
    RepoFile f;
    f.path = e["path"].get<std::string>();
    if (e.contains("size") && e["size"].is_number_unsigned()) f.size = e["size"].get<uint64_t>();
    if (e.contains("lfs") && e["lfs"].is_object()) {
      const auto& lfs = e["lfs"];
      if (lfs.contains("oid") && lfs["oid"].is_string())
        f.sha256 = Sha256FromEtag(lfs["oid"].get<std::string>());
      if (lfs.contains("size") && lfs["size"].is_number_unsigned())
        f.size = lfs["size"].get<uint64_t>();
    }
    out.push_back(std::move(f));
  }
  return out;
}

Result<std::vector<RepoFile>> ListRepoFiles(const HubConfig& hub, const std::string& repo,
                                            const std::string& revision, const HttpOptions& http) {
  const std::string url =
      hub.endpoint + "/api/models/" + repo + "/tree/" + revision + "?recursive=true";
  STRATA_ASSIGN_OR_RETURN(HttpResponse r, HttpGet(url, hub.AuthHeaders(), http));
  if (r.status != 200)
    return Status::Error("listing " + repo + ": " + HttpStatusError(r.status, url, true));
  auto files = ParseTreeListing(r.body);
  if (!files.ok()) return files.status().With(url);
  return files;
}

}  // namespace strata::hub
