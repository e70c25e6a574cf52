#include "hub/download.h"

#include <cstdio>
#include <filesystem>
#include <memory>

#include <openssl/evp.h>

#include "base/progress.h"
#include "hub/hf_api.h"
#include "hub/ref.h"

namespace strata::hub {
namespace {

namespace fs = std::filesystem;

class Sha256 {
 public:
  Sha256() : ctx_(EVP_MD_CTX_new(), EVP_MD_CTX_free) { Reset(); }
  void Reset() { EVP_DigestInit_ex(ctx_.get(), EVP_sha256(), nullptr); }
  void Add(const void* p, size_t n) { EVP_DigestUpdate(ctx_.get(), p, n); }
  std::string Hex() {
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    EVP_DigestFinal_ex(ctx_.get(), md, &n);
    std::string out;
    for (unsigned int i = 0; i < n; ++i) out += StrFormat("%02x", md[i]);
    return out;
  }

 private:
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx_;
};

Status HashInto(const std::string& path, Sha256* h, uint64_t* size) {
  std::unique_ptr<FILE, decltype(&std::fclose)> f(std::fopen(path.c_str(), "rb"), &std::fclose);
  if (!f) return Status::Error("cannot read " + path);
  std::vector<char> buf(1 << 20);
  *size = 0;
  size_t n;
  while ((n = std::fread(buf.data(), 1, buf.size(), f.get())) > 0) {
    h->Add(buf.data(), n);
    *size += n;
  }
  if (std::ferror(f.get())) return Status::Error("error reading " + path);
  return Status::Ok();
}

uint64_t FileSize(const std::string& path) {
  std::error_code ec;
  const auto n = fs::file_size(path, ec);
  return ec ? 0 : static_cast<uint64_t>(n);
}

// Start offset of "bytes START-END/TOTAL"; -1 when unparsable.
int64_t RangeStart(const std::string& content_range) {
  unsigned long long start = 0;
  if (std::sscanf(content_range.c_str(), "bytes %llu-", &start) != 1) return -1;
  return static_cast<int64_t>(start);
}

// One GET, appending at `have` (0: fresh). Returns the HTTP status of the final response.
struct Attempt {
  Attempt(const std::string& u, const std::string& p, uint64_t h, uint64_t e, const std::string& l)
      : url(u), part(p), have(h), expected_size(e), label(l) {}
  const std::string& url;
  const std::string& part;
  uint64_t have;
  uint64_t expected_size;
  const std::string& label;
  Sha256 sha;
  uint64_t written = 0;
  std::unique_ptr<FILE, decltype(&std::fclose)> out{nullptr, &std::fclose};
  std::unique_ptr<Progress> progress;

  Status Begin(const HttpResponse& r) {
    uint64_t start = 0;
    if (r.status == 206) {
      const int64_t s = RangeStart(r.headers.count("content-range") ? r.headers.at("content-range")
                                                                    : std::string());
      if (s < 0 || static_cast<uint64_t>(s) != have)
        return Status::Error("the server answered the range request from byte " +
                             std::to_string(have) + " with a different range");
      start = have;
    } else if (have > 0) {
      std::fprintf(stderr, "%s: the server ignored the range request; restarting from 0\n",
                   label.c_str());
    }
    sha.Reset();
    if (start > 0) {
      uint64_t n = 0;
      STRATA_RETURN_IF_ERROR(HashInto(part, &sha, &n));
      std::fprintf(stderr, "%s: resuming at %s\n", label.c_str(), HumanBytes(start).c_str());
    }
    out.reset(std::fopen(part.c_str(), start > 0 ? "ab" : "wb"));
    if (!out) return Status::Error("cannot write " + part);
    written = start;
    uint64_t total = expected_size;
    if (!total) {
      std::string len = r.FindHeader("x-linked-size");
      if (len.empty() && r.headers.count("content-length"))
        total = std::strtoull(r.headers.at("content-length").c_str(), nullptr, 10) + start;
      else if (!len.empty()) total = std::strtoull(len.c_str(), nullptr, 10);
    }
    progress = std::make_unique<Progress>(label, total);
    progress->Resume(start);
    return Status::Ok();
  }

  Status Write(const char* p, size_t n) {
    if (std::fwrite(p, 1, n, out.get()) != n) return Status::Error("error writing " + part);
    sha.Add(p, n);
    written += n;
    progress->Set(written);
    return Status::Ok();
  }
};

}  // namespace

Result<std::string> Sha256File(const std::string& path) {
  Sha256 h;
  uint64_t n = 0;
  STRATA_RETURN_IF_ERROR(HashInto(path, &h, &n));
  return h.Hex();
}

Result<FetchResult> FetchResumable(const std::string& url, const Headers& headers,
                                   const std::string& part, uint64_t expected_size,
                                   const HttpOptions& http, bool hub, const std::string& label) {
  for (int attempt = 0; attempt < 2; ++attempt) {
    Attempt a(url, part, FileSize(part), expected_size, label);
    Headers h = headers;
    if (a.have > 0) h["Range"] = "bytes=" + std::to_string(a.have) + "-";
    BodySink sink = [&a](const HttpResponse& r, const char* p, size_t n) {
      return p == nullptr ? a.Begin(r) : a.Write(p, n);
    };
    auto r = HttpGet(url, h, http, sink);
    if (a.out) std::fflush(a.out.get());
    a.out.reset();
    if (!r.ok()) {
      if (a.progress) a.progress->Abandon();
      return r.status().With(StrFormat("downloading %s (%s kept in %s; run again to resume)",
                                       url.c_str(), HumanBytes(FileSize(part)).c_str(),
                                       part.c_str()));
    }
    FetchResult out;
    out.published_sha256 = Sha256FromEtag(r->FindHeader("x-linked-etag"));
    if (out.published_sha256.empty()) out.published_sha256 = Sha256FromEtag(r->FindHeader("etag"));
    if (r->status == 416 && a.have > 0) {
      if (expected_size && a.have == expected_size) {  // already complete
        STRATA_ASSIGN_OR_RETURN(out.sha256, Sha256File(part));
        out.size = a.have;
        out.resumed_from = a.have;
        return out;
      }
      std::fprintf(stderr, "%s: the partial file does not fit the server's copy; restarting\n",
                   label.c_str());
      std::remove(part.c_str());
      continue;
    }
    if (r->status < 200 || r->status >= 300)
      return Status::Error(HttpStatusError(r->status, r->final_url, hub));
    a.progress->Finish();
    out.sha256 = a.sha.Hex();
    out.size = a.written;
    out.resumed_from = r->status == 206 ? a.have : 0;
    return out;
  }
  return Status::Error("downloading " + url + ": the server keeps refusing the range request");
}

}  // namespace strata::hub
