#include "http/resources.h"

#include <sys/statvfs.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <iterator>
#include <sstream>

#include "base/log.h"
#include "base/mmap.h"
#include "http/prom.h"

namespace strata::http {

namespace {

std::string ReadSmallFile(const char* path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

double Round1(double v) { return std::round(v * 10) / 10; }

int64_t UnixMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace

std::optional<CpuTimes> ParseProcStat(std::string_view text) {
  // "cpu  user nice system idle iowait irq softirq steal guest guest_nice"
  size_t pos = 0;
  while (pos < text.size()) {
    const size_t eol = std::min(text.find('\n', pos), text.size());
    const std::string_view line = text.substr(pos, eol - pos);
    pos = eol + 1;
    if (line.size() < 4 || line.substr(0, 4) != "cpu ") continue;
    std::istringstream in{std::string(line.substr(4))};
    uint64_t v[8] = {};
    int n = 0;
    while (n < 8 && (in >> v[n])) ++n;
    if (n < 4) return std::nullopt;
    CpuTimes t;
    // guest and guest_nice are already counted in user and nice.
    for (int i = 0; i < n; ++i) t.total += v[i];
    const uint64_t idle = v[3] + (n > 4 ? v[4] : 0);  // idle + iowait
    t.busy = t.total - idle;
    return t;
  }
  return std::nullopt;
}

double CpuPercent(const CpuTimes& before, const CpuTimes& after) {
  if (after.total <= before.total || after.busy < before.busy) return 0;
  const double p = 100.0 * static_cast<double>(after.busy - before.busy) /
                   static_cast<double>(after.total - before.total);
  return std::clamp(p, 0.0, 100.0);
}

std::optional<MemInfo> ParseMeminfo(std::string_view text) {
  uint64_t total = 0, avail = 0, free = 0, buffers = 0, cached = 0;
  bool has_total = false, has_avail = false;
  std::istringstream in{std::string(text)};
  std::string key;
  uint64_t kb = 0;
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream ls(line);
    if (!(ls >> key >> kb)) continue;
    if (key == "MemTotal:") total = kb, has_total = true;
    else if (key == "MemAvailable:") avail = kb, has_avail = true;
    else if (key == "MemFree:") free = kb;
    else if (key == "Buffers:") buffers = kb;
    else if (key == "Cached:") cached = kb;
  }
  if (!has_total || total == 0) return std::nullopt;
  MemInfo m;
  m.total_bytes = total * 1024;
  m.available_bytes = std::min(total, has_avail ? avail : free + buffers + cached) * 1024;
  return m;
}

const char* ResourceName(Resource r) {
  static constexpr const char* kNames[] = {"cpu", "memory", "disk"};  // by Resource value
  static_assert(std::size(kNames) == kResourceCount);
  const auto i = static_cast<size_t>(r);
  return i < std::size(kNames) ? kNames[i] : "?";
}

double ResourceThresholds::Of(Resource r) const {
  return r == Resource::kCpu ? cpu : r == Resource::kMemory ? memory : disk;
}

double ResourceSample::Percent(Resource r) const {
  return r == Resource::kCpu ? cpu_percent : r == Resource::kMemory ? memory_percent : disk_percent;
}

bool NextWarning(bool was, double value, double threshold, double hysteresis) {
  if (threshold <= 0) return false;
  if (!was) return value > threshold;
  return value >= threshold - hysteresis;
}

ResourceMonitor::ResourceMonitor(Options o) : o_(std::move(o)) {}

void ResourceMonitor::Sample() {
  ResourceSample s;
  s.sampled_at_ms = UnixMs();
  const std::optional<CpuTimes> cpu = ParseProcStat(ReadSmallFile("/proc/stat"));
  if (const auto mem = ParseMeminfo(ReadSmallFile("/proc/meminfo"))) {
    s.memory_total_bytes = mem->total_bytes;
    s.memory_available_bytes = mem->available_bytes;
    s.memory_percent = 100.0 * static_cast<double>(mem->total_bytes - mem->available_bytes) /
                       static_cast<double>(mem->total_bytes);
  }
  struct statvfs vfs {};
  if (::statvfs(o_.disk_path.c_str(), &vfs) == 0 && vfs.f_blocks > 0) {
    // As df: used / (used + available to unprivileged users).
    const double used = static_cast<double>(vfs.f_blocks - vfs.f_bfree);
    const double avail = static_cast<double>(vfs.f_bavail);
    s.disk_total_bytes = static_cast<uint64_t>(vfs.f_blocks) * vfs.f_frsize;
    s.disk_available_bytes = static_cast<uint64_t>(vfs.f_bavail) * vfs.f_frsize;
    s.disk_percent = used + avail > 0 ? 100.0 * used / (used + avail) : 0;
  }
  s.rss_bytes = CurrentRssBytes();
  s.valid = true;

  std::lock_guard<std::mutex> lock(mu_);
  if (cpu) s.cpu_percent = CpuPercent(last_cpu_.value_or(CpuTimes{}), *cpu);
  if (cpu) last_cpu_ = cpu;
  for (int i = 0; i < kResourceCount; ++i) {
    const Resource r = static_cast<Resource>(i);
    const double threshold = o_.thresholds.Of(r);
    const bool was = cur_.warning[i];
    s.warning[i] = NextWarning(was, s.Percent(r), threshold);
    if (s.warning[i] && !was)
      STRATA_LOG(LogLevel::kWarn,
                 "resource warning: component=%s resource=%s percent=%.1f threshold=%.1f "
                 "state=above",
                 o_.component.c_str(), ResourceName(r), s.Percent(r), threshold);
    else if (!s.warning[i] && was)
      STRATA_LOG(LogLevel::kWarn,
                 "resource recovered: component=%s resource=%s percent=%.1f threshold=%.1f "
                 "state=below",
                 o_.component.c_str(), ResourceName(r), s.Percent(r), threshold);
  }
  cur_ = s;
}

void ResourceMonitor::Start(const boost::asio::any_io_executor& ex) {
  Sample();
  timer_ = std::make_unique<boost::asio::steady_timer>(ex);
  Arm();
}

void ResourceMonitor::Arm() {
  timer_->expires_after(o_.interval);
  timer_->async_wait([this](const boost::system::error_code& ec) {
    if (ec) return;
    Sample();
    Arm();
  });
}

ResourceSample ResourceMonitor::Current() const {
  std::lock_guard<std::mutex> lock(mu_);
  return cur_;
}

nlohmann::json ResourceMonitor::Json() const {
  const ResourceSample s = Current();
  nlohmann::json warnings = nlohmann::json::array();
  for (int i = 0; i < kResourceCount; ++i)
    if (s.warning[i]) warnings.push_back(ResourceName(static_cast<Resource>(i)));
  return {{"cpu_percent", Round1(s.cpu_percent)},
          {"memory_percent", Round1(s.memory_percent)},
          {"disk_percent", Round1(s.disk_percent)},
          {"rss_bytes", s.rss_bytes},
          {"memory_total_bytes", s.memory_total_bytes},
          {"memory_available_bytes", s.memory_available_bytes},
          {"disk_total_bytes", s.disk_total_bytes},
          {"disk_available_bytes", s.disk_available_bytes},
          {"disk_path", o_.disk_path},
          {"sampled_at_ms", s.sampled_at_ms},
          {"interval_ms", o_.interval.count()},
          {"warnings", warnings},
          {"memory_pressure", s.warning[static_cast<int>(Resource::kMemory)]},
          {"thresholds",
           {{"cpu", o_.thresholds.cpu},
            {"memory", o_.thresholds.memory},
            {"disk", o_.thresholds.disk}}}};
}

void ResourceMonitor::RenderMetrics(std::string* out) const {
  const ResourceSample s = Current();
  PromMetric("strata_host_cpu_percent", "gauge", "Host CPU busy percent.", s.cpu_percent, out);
  PromMetric("strata_host_memory_percent", "gauge",
             "Host memory in use percent (MemTotal - MemAvailable).", s.memory_percent, out);
  PromMetric("strata_host_disk_percent", "gauge",
             "Disk use percent of the filesystem holding the model/data directory.", s.disk_percent,
             out);
  PromMetric("strata_process_resident_bytes", "gauge", "Resident set size of this process.",
             static_cast<double>(s.rss_bytes), out);
  PromHeader("strata_resource_warning", "gauge",
             "1 while the resource is above its warning threshold.", out);
  for (int i = 0; i < kResourceCount; ++i)
    *out += std::string("strata_resource_warning{resource=\"") +
            ResourceName(static_cast<Resource>(i)) + "\"} " + (s.warning[i] ? "1" : "0") + "\n";
}

}  // namespace strata::http
