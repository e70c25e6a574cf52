#include "http/prom.h"

#include <cmath>
#include <cstdio>

namespace strata::http {

Histogram::Histogram(std::vector<double> bounds)
    : bounds_(std::move(bounds)), counts_(bounds_.size() + 1, 0) {}

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

void Histogram::Render(const std::string& name, const std::string& labels, std::string* out) const {
  const std::string sep = labels.empty() ? "" : ",";
  uint64_t cum = 0;
  for (size_t i = 0; i <= bounds_.size(); ++i) {
    cum += counts_[i];
    const std::string le = i < bounds_.size() ? PromNum(bounds_[i]) : "+Inf";
    *out += name + "_bucket{" + labels + sep + "le=\"" + le + "\"} " + std::to_string(cum) + "\n";
  }
  const std::string l = labels.empty() ? "" : "{" + labels + "}";
  *out += name + "_sum" + l + " " + PromNum(sum_) + "\n";
  *out += name + "_count" + l + " " + std::to_string(count_) + "\n";
}

std::string PromNum(double v) {
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  char num[64];
  std::snprintf(num, sizeof(num), "%.9g", v);
  return num;
}

void PromHeader(const std::string& name, const char* type, const std::string& help,
                std::string* out) {
  *out += "# HELP " + name + " " + help + "\n# TYPE " + name + " " + type + "\n";
}

void PromMetric(const std::string& name, const char* type, const std::string& help, double value,
                std::string* out) {
  PromHeader(name, type, help, out);
  *out += name + " " + PromNum(value) + "\n";
}

void PromCounter(const std::string& name, const std::string& help, uint64_t value,
                 std::string* out) {
  PromMetric(name, "counter", help, static_cast<double>(value), out);
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

}  // namespace strata::http
