// Model references accepted by `strata pull` and `--model`:
//   hf://OWNER/REPO/PATH/FILE.gguf[@REVISION]   (also hf://OWNER/REPO@REVISION/PATH)
//   OWNER/REPO[:QUANT]                          (file picked from the repository's listing)
//   http(s)://HOST/PATH                         (any direct URL)
// plus the quantization picker and the local layout of the models directory.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "base/status.h"

namespace strata::hub {

enum class RefKind { kHfFile, kHfQuant, kUrl };

struct Ref {
  RefKind kind = RefKind::kUrl;
  std::string repo;               // OWNER/REPO (hub kinds)
  std::string file;               // path inside the repository (kHfFile)
  std::string revision = "main";  // hub kinds
  std::string quant;              // kHfQuant; empty: the default (Q4_K_M)
  std::string url;                // kUrl
  std::string text;               // the reference as given
};

// Parses a reference; errors say which form was expected.
Result<Ref> ParseRef(const std::string& text);

// True when `text` is meant as a reference rather than a local file path: a hf:// or
// http(s):// URL, or OWNER/REPO[:QUANT] (two name segments, not ending in .gguf).
bool LooksLikeRef(const std::string& text);

// One file of a repository listing.
struct RepoFile {
  std::string path;
  uint64_t size = 0;
  std::string sha256;  // lfs.oid when the listing has it, else empty
};

inline constexpr const char* kDefaultQuant = "Q4_K_M";

// The quantization tag of a GGUF file name: "Q4_K_M" for "x/Model-7B-Q4_K_M.gguf" (upper case,
// split suffix "-00001-of-00003" ignored). Empty when there is no tag.
std::string QuantOfName(const std::string& path);
// True for "...-00001-of-00003.gguf" parts of a split model.
bool IsSplitPart(const std::string& path);

// Picks the GGUF of quantization `quant` (case-insensitive; empty: kDefaultQuant, or the only
// GGUF of the repository) as llama.cpp's `-hf` does: a single-file GGUF is preferred over a
// split one; mmproj files are skipped. Errors list the quantizations available.
Result<RepoFile> PickQuantFile(const std::vector<RepoFile>& files, const std::string& quant,
                               const std::string& repo);

// $STRATA_MODELS, else $XDG_DATA_HOME/strata/models, else ~/.local/share/strata/models.
Result<std::string> DefaultModelsDir();

// Where a pulled file lives, relative to the models directory: OWNER/REPO/FILE for the hub,
// HOST/FILE for URLs.
std::string LocalRelPath(const Ref& ref, const std::string& repo_file);

// Lower-case hex SHA-256 from an ETag / X-Linked-Etag value (W/ prefix and quotes removed);
// empty when the value is not a SHA-256.
std::string Sha256FromEtag(const std::string& etag);

}  // namespace strata::hub
