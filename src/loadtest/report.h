// What `strata loadtest` reports: the JSON document (--json), the text table on stdout and the
// SVG chart of throughput and latency against concurrency (or rate) (--svg).
#pragma once

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "loadtest/runner.h"

namespace strata::loadtest {

nlohmann::json DistJson(const Dist& d);
nlohmann::json LevelJson(const LevelRun& run);
nlohmann::json ReportJson(const LoadOptions& o, const std::string& endpoint_path,
                          const std::vector<LevelRun>& runs);

// A vLLM-style block for one level.
std::string LevelText(const LevelRun& run);

// Hand-written SVG: top panel throughput (output tok/s, left axis; requests/s, right axis),
// bottom panel latency in ms (TTFT p50/p99, TPOT mean, ITL p99, E2E p50), one x position per level.
std::string RenderSvg(const std::string& title, const std::vector<LevelRun>& runs);

// Axis ticks: a "nice" step (1, 2 or 5 x 10^k) giving about `target` ticks from 0 to >= max.
std::vector<double> NiceTicks(double max, int target);

}  // namespace strata::loadtest
