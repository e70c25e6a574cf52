#include "hub/ref.h"

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <set>

namespace strata::hub {
namespace {

std::string Upper(std::string s) {
  for (char& c : s) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return s;
}

bool EndsWithI(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && Upper(s.substr(s.size() - suffix.size())) == Upper(suffix);
}

bool ValidName(const std::string& s) {
  if (s.empty() || s == "." || s == ".." || s.size() > 96) return false;
  return std::all_of(s.begin(), s.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.';
  });
}

// Checks "OWNER/REPO" and returns an error naming `text` otherwise.
Status CheckRepo(const std::string& repo, const std::string& text) {
  const size_t slash = repo.find('/');
  if (slash == std::string::npos || !ValidName(repo.substr(0, slash)) ||
      !ValidName(repo.substr(slash + 1)))
    return Status::Error("bad repository '" + repo + "' in '" + text +
                         "' (expected OWNER/REPO of letters, digits, '-', '_', '.')");
  return Status::Ok();
}

Result<Ref> ParseHfUrl(const std::string& text) {
  Ref r;
  r.kind = RefKind::kHfFile;
  r.text = text;
  std::string rest = text.substr(5);  // after hf://
  // hf://OWNER/REPO@REV/PATH
  const size_t s1 = rest.find('/');
  const size_t s2 = s1 == std::string::npos ? std::string::npos : rest.find('/', s1 + 1);
  if (s2 == std::string::npos)
    return Status::Error("bad reference '" + text + "': expected hf://OWNER/REPO/FILE.gguf");
  std::string repo = rest.substr(0, s2), path = rest.substr(s2 + 1);
  if (const size_t at = repo.find('@'); at != std::string::npos) {
    r.revision = repo.substr(at + 1);
    repo.resize(at);
  } else if (const size_t at2 = path.rfind('@'); at2 != std::string::npos) {
    r.revision = path.substr(at2 + 1);  // hf://OWNER/REPO/FILE.gguf@REV
    path.resize(at2);
  }
  STRATA_RETURN_IF_ERROR(CheckRepo(repo, text));
  if (path.empty() || path.back() == '/' || path.find("..") != std::string::npos || path[0] == '/')
    return Status::Error("bad file path in '" + text + "'");
  if (r.revision.empty() || r.revision.find("..") != std::string::npos)
    return Status::Error("bad revision in '" + text + "'");
  r.repo = repo;
  r.file = path;
  return r;
}

}  // namespace

Result<Ref> ParseRef(const std::string& text) {
  if (text.rfind("hf://", 0) == 0) return ParseHfUrl(text);
  Ref r;
  r.text = text;
  if (text.rfind("http://", 0) == 0 || text.rfind("https://", 0) == 0) {
    r.kind = RefKind::kUrl;
    r.url = text;
    return r;
  }
  r.kind = RefKind::kHfQuant;
  const size_t colon = text.find(':');
  r.repo = text.substr(0, colon);
  if (colon != std::string::npos) {
    r.quant = text.substr(colon + 1);
    if (!ValidName(r.quant))
      return Status::Error("bad quantization tag in '" + text + "' (e.g. OWNER/REPO:Q4_K_M)");
  }
  if (std::count(r.repo.begin(), r.repo.end(), '/') != 1)
    return Status::Error("'" + text +
                         "' is not a model reference: expected hf://OWNER/REPO/"
                         "FILE.gguf, OWNER/REPO:QUANT or an https:// URL");
  STRATA_RETURN_IF_ERROR(CheckRepo(r.repo, text));
  return r;
}

bool LooksLikeRef(const std::string& text) {
  if (text.rfind("hf://", 0) == 0 || text.rfind("http://", 0) == 0 ||
      text.rfind("https://", 0) == 0)
    return true;
  if (text.find(':') == std::string::npos && EndsWithI(text, ".gguf")) return false;
  if (!text.empty() && (text[0] == '/' || text[0] == '.' || text[0] == '~')) return false;
  return ParseRef(text).ok();
}

bool IsSplitPart(const std::string& path) {
  // -NNNNN-of-NNNNN.gguf
  const std::string u = Upper(path);
  if (!EndsWithI(u, ".GGUF") || u.size() < 5 + 15) return false;
  const std::string s = u.substr(u.size() - 5 - 15, 15);  // -00001-OF-00003
  auto digits = [&](size_t a) {
    for (size_t i = a; i < a + 5; ++i)
      if (!std::isdigit(static_cast<unsigned char>(s[i]))) return false;
    return true;
  };
  return s[0] == '-' && digits(1) && s.substr(6, 4) == "-OF-" && digits(10);
}

std::string QuantOfName(const std::string& path) {
  std::string base = path.substr(path.rfind('/') + 1);
  if (!EndsWithI(base, ".gguf")) return std::string();
  if (IsSplitPart(base)) base.resize(base.size() - 5 - 15);
  else base.resize(base.size() - 5);
  const size_t cut = base.find_last_of("-.");
  std::string tag = Upper(cut == std::string::npos ? base : base.substr(cut + 1));
  // Quantization tags start with a type letter and contain a digit (Q4_K_M, IQ2_XS, F16, BF16).
  const bool has_digit = std::any_of(
      tag.begin(), tag.end(), [](char c) { return std::isdigit(static_cast<unsigned char>(c)); });
  if (tag.empty() || !has_digit ||
      !(tag[0] == 'Q' || tag[0] == 'I' || tag[0] == 'F' || tag[0] == 'B' || tag[0] == 'T'))
    return std::string();
  return tag;
}

Result<RepoFile> PickQuantFile(const std::vector<RepoFile>& files, const std::string& quant,
                               const std::string& repo) {
  std::vector<const RepoFile*> ggufs;
  std::set<std::string> available;
  for (const RepoFile& f : files) {
    if (!EndsWithI(f.path, ".gguf") || Upper(f.path).find("MMPROJ") != std::string::npos) continue;
    ggufs.push_back(&f);
    if (std::string q = QuantOfName(f.path); !q.empty()) available.insert(q);
  }
  std::string list;
  for (const std::string& q : available) list += (list.empty() ? "" : ", ") + q;
  if (ggufs.empty()) return Status::Error("repository " + repo + " has no .gguf file");
  std::string want = Upper(quant);
  if (want.empty()) {
    if (ggufs.size() == 1) return *ggufs[0];
    want = kDefaultQuant;
  }
  std::vector<const RepoFile*> single, split;
  for (const RepoFile* f : ggufs) {
    // The tag of the file name, or of its directory (Q4_K_M/Model-Q4_K_M-00001-of-00002.gguf).
    const std::string dir = f->path.find('/') == std::string::npos
                                ? std::string()
                                : Upper(f->path.substr(0, f->path.rfind('/')));
    const std::string dir_tag =
        dir.substr(dir.rfind('/') == std::string::npos ? 0 : dir.rfind('/') + 1);
    if (QuantOfName(f->path) != want && dir_tag != want) continue;
    (IsSplitPart(f->path) ? split : single).push_back(f);
  }
  if (single.size() == 1) return *single[0];
  if (single.size() > 1) {
    std::string names;
    for (const RepoFile* f : single) names += "\n  " + f->path;
    return Status::Error("quantization " + want + " is ambiguous in " + repo +
                         "; pull one file with hf://" + repo + "/FILE.gguf:" + names);
  }
  if (!split.empty())
    return Status::Error("quantization " + want + " of " + repo + " exists only as a split GGUF (" +
                         split[0]->path +
                         ", ...); strata loads single-file GGUFs: merge the "
                         "parts with llama-gguf-split --merge, or pick another quantization");
  return Status::Error("no " + want + " GGUF in " + repo + "; available quantizations: " +
                       (list.empty() ? std::string("(none recognised)") : list));
}

Result<std::string> DefaultModelsDir() {
  if (const char* d = std::getenv("STRATA_MODELS"); d && *d) return std::string(d);
  if (const char* x = std::getenv("XDG_DATA_HOME"); x && *x)
    return std::string(x) + "/strata/models";
  if (const char* h = std::getenv("HOME"); h && *h)
    return std::string(h) + "/.local/share/strata/models";
  return Status::Error("no models directory: set STRATA_MODELS (or HOME) or pass --out");
}

std::string LocalRelPath(const Ref& ref, const std::string& repo_file) {
  std::string base = repo_file.substr(repo_file.rfind('/') + 1);
  if (ref.kind != RefKind::kUrl) return ref.repo + "/" + base;
  // URL: HOST/BASENAME (query dropped).
  std::string rest = ref.url.substr(ref.url.find("://") + 3);
  std::string host = rest.substr(0, rest.find_first_of("/?#"));
  std::replace(host.begin(), host.end(), ':', '_');
  std::string path = rest.substr(host.size());
  path = path.substr(0, path.find_first_of("?#"));
  base = path.substr(path.rfind('/') + 1);
  if (!ValidName(base)) base = "model.gguf";
  if (!ValidName(host)) host = "url";
  return host + "/" + base;
}

std::string Sha256FromEtag(const std::string& etag) {
  std::string e = etag;
  if (e.rfind("W/", 0) == 0) e = e.substr(2);
  e.erase(std::remove(e.begin(), e.end(), '"'), e.end());
  if (e.size() != 64) return std::string();
  for (char& c : e) {
    c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    if (!std::isxdigit(static_cast<unsigned char>(c))) return std::string();
  }
  return e;
}

}  // namespace strata::hub
