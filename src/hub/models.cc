// The models directory listing (`strata models`).
#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>

#include <nlohmann/json.hpp>

#include "gguf/gguf.h"
#include "hub/pull.h"
#include "hub/ref.h"

namespace strata::hub {
namespace {

namespace fs = std::filesystem;

bool IsGguf(const fs::path& p) {
  std::string ext = p.extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(),
                 [](unsigned char c) { return std::tolower(c); });
  return ext == ".gguf";
}

// Architecture and the weight type holding the most bytes among matrices.
void Describe(LocalModel* m) {
  m->arch = "?";
  auto f = gguf::File::Open(m->path);
  if (!f.ok()) return;
  if (auto a = f.value()->GetString("general.architecture"); a.ok())
    m->arch = std::string(a.value());
  if (!m->quant.empty()) return;
  std::map<std::string, uint64_t> bytes;
  for (const auto& t : f.value()->tensors())
    if (t.dims.size() >= 2) bytes[DTypeName(t.type)] += t.nbytes;
  uint64_t best = 0;
  for (const auto& [name, n] : bytes)
    if (n > best) {
      best = n;
      m->quant = name;
    }
}

}  // namespace

Result<std::vector<LocalModel>> ListModels(const std::string& dir) {
  std::vector<LocalModel> out;
  std::error_code ec;
  if (!fs::exists(dir, ec)) return out;
  fs::recursive_directory_iterator it(dir, fs::directory_options::skip_permission_denied, ec);
  if (ec) return Status::Error("cannot read " + dir + ": " + ec.message());
  for (; it != fs::recursive_directory_iterator(); it.increment(ec)) {
    if (ec) return Status::Error("cannot read " + dir + ": " + ec.message());
    if (!it->is_regular_file(ec) || !IsGguf(it->path())) continue;
    LocalModel m;
    m.path = it->path().string();
    m.name = fs::relative(it->path(), dir, ec).string();
    m.size = it->file_size(ec);
    m.quant = QuantOfName(m.name);
    std::ifstream side(m.path + ".source.json");
    if (side) {
      nlohmann::json j = nlohmann::json::parse(side, nullptr, false);
      if (j.is_object()) {
        m.ref = j.value("ref", std::string());
        m.sha256 = j.value("sha256", std::string());
      }
    }
    Describe(&m);
    out.push_back(std::move(m));
  }
  std::sort(out.begin(), out.end(),
            [](const LocalModel& a, const LocalModel& b) { return a.name < b.name; });
  return out;
}

}  // namespace strata::hub
