#include "gateway/metrics.h"

#include <cstdio>

namespace strata::gateway {

std::vector<double> Histogram::LatencyBuckets() {
  return {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120};
}

void Histogram::Observe(double v) {
  size_t i = 0;
  while (i < bounds_.size() && v > bounds_[i]) ++i;
  ++counts_[i];
  ++count_;
  sum_ += v;
}

void Histogram::Render(const std::string& name, const std::string& labels,
                       std::string* out) const {
  const std::string sep = labels.empty() ? "" : ",";
  uint64_t cum = 0;
  char num[64];
  for (size_t i = 0; i <= bounds_.size(); ++i) {
    cum += counts_[i];
    if (i < bounds_.size())
      std::snprintf(num, sizeof(num), "%g", bounds_[i]);
    else
      std::snprintf(num, sizeof(num), "+Inf");
    *out += name + "_bucket{" + labels + sep + "le=\"" + num + "\"} " + std::to_string(cum) + "\n";
  }
  std::snprintf(num, sizeof(num), "%.6f", sum_);
  const std::string l = labels.empty() ? "" : "{" + labels + "}";
  *out += name + "_sum" + l + " " + num + "\n";
  *out += name + "_count" + l + " " + std::to_string(count_) + "\n";
}

std::string PromEscape(const std::string& s) {
  std::string o;
  for (char c : s) {
    if (c == '\\' || c == '"') o += '\\';
    if (c == '\n') {
      o += "\\n";
      continue;
    }
    o += c;
  }
  return o;
}

}  // namespace strata::gateway
