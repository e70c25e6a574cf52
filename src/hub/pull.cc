#include "hub/pull.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>

#include <nlohmann/json.hpp>

#include "gguf/gguf.h"
#include "hub/download.h"
#include "hub/hf_api.h"
#include "hub/ref.h"
#include "model/config.h"

namespace strata::hub {
namespace {

namespace fs = std::filesystem;
constexpr const char* kSidecar = ".source.json";

// An exclusive lock on `path` (created) held for the object's lifetime: two processes pulling
// the same file do not write one .part together.
class FileLock {
 public:
  explicit FileLock(const std::string& path) : fd_(::open(path.c_str(), O_CREAT | O_RDWR, 0644)) {
    if (fd_ >= 0) ::flock(fd_, LOCK_EX);
  }
  ~FileLock() {
    if (fd_ >= 0) ::close(fd_);
  }
  bool ok() const { return fd_ >= 0; }

 private:
  int fd_;
};

// Where the download comes from: the URL, its headers and what is known in advance.
struct Source {
  Ref ref;
  std::string url;
  Headers headers;
  std::string repo_file;      // path in the repository (hub) or of the URL
  std::string listed_sha256;  // from the tree listing
  uint64_t size = 0;
  bool hub = false;
};

Result<Source> Locate(const std::string& text, const HttpOptions& http) {
  Source s;
  STRATA_ASSIGN_OR_RETURN(s.ref, ParseRef(text));
  const HubConfig hub = HubConfig::FromEnv();
  if (s.ref.kind == RefKind::kUrl) {
    s.url = s.ref.url;
    STRATA_ASSIGN_OR_RETURN(Url u, Url::Parse(s.url));
    s.repo_file = u.target.substr(0, u.target.find('?'));
    // The token goes only to the hub itself, never to arbitrary hosts.
    STRATA_ASSIGN_OR_RETURN(Url e, Url::Parse(hub.endpoint));
    if (e.HostPort() == u.HostPort() && e.scheme == u.scheme) s.headers = hub.AuthHeaders();
    return s;
  }
  s.hub = true;
  s.headers = hub.AuthHeaders();
  if (s.ref.kind == RefKind::kHfFile) {
    s.repo_file = s.ref.file;
  } else {
    STRATA_ASSIGN_OR_RETURN(std::vector<RepoFile> files,
                            ListRepoFiles(hub, s.ref.repo, s.ref.revision, http));
    STRATA_ASSIGN_OR_RETURN(RepoFile f, PickQuantFile(files, s.ref.quant, s.ref.repo));
    s.repo_file = f.path;
    s.listed_sha256 = f.sha256;
    s.size = f.size;
    std::fprintf(stderr, "%s: picked %s\n", text.c_str(), f.path.c_str());
  }
  s.url = ResolveUrl(hub, s.ref.repo, s.ref.revision, s.repo_file);
  return s;
}

Status WriteSidecar(const std::string& path, const Source& s, const PullResult& r) {
  nlohmann::json j = {{"ref", s.ref.text},
                      {"url", s.url},
                      {"sha256", r.sha256},
                      {"size", r.size},
                      {"verified", r.verified},
                      {"pulled_at", std::chrono::duration_cast<std::chrono::seconds>(
                                        std::chrono::system_clock::now().time_since_epoch())
                                        .count()}};
  std::ofstream f(path + kSidecar);
  f << j.dump(2) << "\n";
  return f ? Status::Ok() : Status::Error("cannot write " + path + kSidecar);
}

nlohmann::json ReadSidecar(const std::string& path) {
  std::ifstream f(path + kSidecar);
  if (!f) return nlohmann::json::object();
  nlohmann::json j = nlohmann::json::parse(f, nullptr, false);
  return j.is_object() ? j : nlohmann::json::object();
}

// Verifies, validates and installs a finished .part; removes it when it is unusable.
Status Install(const Source& s, const std::string& part, const std::string& dest,
               const FetchResult& f, PullResult* r) {
  const std::string want = !s.listed_sha256.empty() ? s.listed_sha256 : f.published_sha256;
  if (!want.empty() && want != f.sha256) {
    std::remove(part.c_str());
    return Status::Error("SHA-256 mismatch for " + s.url + ": the hub publishes " + want +
                         ", the download is " + f.sha256 +
                         " (corrupted transfer or tampered file; the partial file was deleted, "
                         "run again to download it afresh)");
  }
  if (want.empty())
    std::fprintf(stderr, "note: %s publishes no SHA-256; the file is checked as a GGUF only\n",
                 s.url.c_str());
  if (Status v = ValidateGguf(part); !v.ok()) {
    std::remove(part.c_str());
    return v.With("refusing " + s.url);
  }
  std::error_code ec;
  fs::rename(part, dest, ec);
  if (ec) return Status::Error("cannot move " + part + " to " + dest + ": " + ec.message());
  r->path = dest;
  r->sha256 = f.sha256;
  r->size = f.size;
  r->verified = !want.empty();
  return WriteSidecar(dest, s, *r);
}

}  // namespace

Status ValidateGguf(const std::string& path) {
  auto file = gguf::File::Open(path);
  if (!file.ok()) return file.status().With("not a valid GGUF file");
  auto cfg = ConfigFromGguf(*file.value());
  if (!cfg.ok()) return cfg.status().With("not a model strata can serve");
  return Status::Ok();
}

Result<PullResult> Pull(const std::string& text, const Options& o) {
  std::string dir = o.models_dir;
  if (dir.empty()) {
    STRATA_ASSIGN_OR_RETURN(dir, DefaultModelsDir());
  }
  STRATA_ASSIGN_OR_RETURN(Source s, Locate(text, o.http));
  const std::string dest = dir + "/" + LocalRelPath(s.ref, s.repo_file);
  std::error_code ec;
  fs::create_directories(fs::path(dest).parent_path(), ec);
  if (ec)
    return Status::Error("cannot create " + fs::path(dest).parent_path().string() + ": " +
                         ec.message());
  FileLock lock(dest + ".lock");
  if (!lock.ok()) return Status::Error("cannot lock " + dest + ".lock");
  PullResult r;
  if (fs::exists(dest)) {
    r.path = dest;
    r.size = fs::file_size(dest, ec);
    r.sha256 = ReadSidecar(dest).value("sha256", std::string());
    r.already_present = true;
    return r;
  }
  const std::string part = dest + ".part";
  const std::string label = fs::path(dest).filename().string();
  STRATA_ASSIGN_OR_RETURN(FetchResult f,
                          FetchResumable(s.url, s.headers, part, s.size, o.http, s.hub, label));
  STRATA_RETURN_IF_ERROR(Install(s, part, dest, f, &r));
  fs::remove(dest + ".lock", ec);
  return r;
}

Result<std::string> ResolveModel(const std::string& text, const Options& o) {
  std::error_code ec;
  if (fs::exists(text, ec) || !LooksLikeRef(text)) return text;
  std::string dir = o.models_dir;
  if (dir.empty()) {
    STRATA_ASSIGN_OR_RETURN(dir, DefaultModelsDir());
  }
  // A reference pulled before (recorded in the sidecars) is used without asking the network.
  if (fs::is_directory(dir, ec)) {
    auto models = ListModels(dir);
    if (models.ok())
      for (const LocalModel& m : models.value())
        if (m.ref == text) return m.path;
  }
  Options po = o;
  po.models_dir = dir;
  STRATA_ASSIGN_OR_RETURN(PullResult r, Pull(text, po));
  return r.path;
}

}  // namespace strata::hub
