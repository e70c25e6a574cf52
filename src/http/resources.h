// Host and process resource monitoring shared by `strata node` and `strata gateway`: host CPU %
// (from /proc/stat deltas), memory % (MemTotal - MemAvailable of /proc/meminfo), disk % of a
// directory's filesystem (statvfs), and the process's resident set (VmRSS of
// /proc/self/status), sampled on a timer. Each figure has a warning threshold: crossing it logs
// one structured warning, falling back below it (with a small hysteresis) logs one recovery
// line. Exposed as a JSON object (for /health) and as Prometheus text (for /metrics).
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include <boost/asio.hpp>
#include <nlohmann/json.hpp>

namespace strata::http {

// Cumulative CPU time of the host in clock ticks (the "cpu" line of /proc/stat).
struct CpuTimes {
  uint64_t busy = 0, total = 0;
};
// Parses the aggregate "cpu" line of /proc/stat; nullopt when absent or malformed.
std::optional<CpuTimes> ParseProcStat(std::string_view text);
// CPU busy percent between two readings (0 when no time passed).
double CpuPercent(const CpuTimes& before, const CpuTimes& after);

struct MemInfo {
  uint64_t total_bytes = 0, available_bytes = 0;
};
// MemTotal and MemAvailable of /proc/meminfo (MemFree + Buffers + Cached on kernels without
// MemAvailable); nullopt when MemTotal is missing.
std::optional<MemInfo> ParseMeminfo(std::string_view text);

enum class Resource { kCpu = 0, kMemory = 1, kDisk = 2 };
constexpr int kResourceCount = 3;
const char* ResourceName(Resource r);  // "cpu" | "memory" | "disk"

struct ResourceThresholds {
  // Percent; a figure above its threshold is a warning. 0 turns that warning off.
  double cpu = 90, memory = 90, disk = 90;
  double Of(Resource r) const;
};

// One sample.
struct ResourceSample {
  bool valid = false;
  double cpu_percent = 0, memory_percent = 0, disk_percent = 0;
  uint64_t rss_bytes = 0;
  uint64_t memory_total_bytes = 0, memory_available_bytes = 0;
  uint64_t disk_total_bytes = 0, disk_available_bytes = 0;
  int64_t sampled_at_ms = 0;                   // unix milliseconds
  std::array<bool, kResourceCount> warning{};  // per Resource, with hysteresis
  double Percent(Resource r) const;
};

// The warning state machine, separate from the sampling so that it is testable: returns
// whether `value` is a warning now given the previous state. A warning starts above the
// threshold and ends below threshold - hysteresis.
bool NextWarning(bool was, double value, double threshold, double hysteresis = 2.0);

class ResourceMonitor {
 public:
  struct Options {
    std::string component = "strata";  // for the log lines: "node", "gateway"
    std::string disk_path = ".";       // a path on the filesystem whose use is measured
    ResourceThresholds thresholds;
    std::chrono::milliseconds interval{5000};
  };
  explicit ResourceMonitor(Options o);

  // Takes one sample now (reading /proc and statvfs), updates the warnings and logs their
  // crossings. The CPU figure of the first sample is the average since boot.
  void Sample();
  // Samples now and then every interval on a timer of `ex`'s context, until it stops. The
  // monitor must be destroyed before that context.
  void Start(const boost::asio::any_io_executor& ex);

  ResourceSample Current() const;
  const Options& options() const { return o_; }
  // {"cpu_percent", "memory_percent", "disk_percent", "rss_bytes", "memory_total_bytes",
  //  "memory_available_bytes", "disk_total_bytes", "disk_available_bytes", "disk_path",
  //  "sampled_at_ms", "warnings": [names], "memory_pressure", "thresholds": {cpu, memory, disk}}
  nlohmann::json Json() const;
  // strata_host_{cpu,memory,disk}_percent, strata_process_resident_bytes and
  // strata_resource_warning{resource}.
  void RenderMetrics(std::string* out) const;

 private:
  void Arm();  // the next timer tick

  Options o_;
  mutable std::mutex mu_;
  ResourceSample cur_;
  std::optional<CpuTimes> last_cpu_;
  std::unique_ptr<boost::asio::steady_timer> timer_;  // destroyed before its io_context
};

}  // namespace strata::http
