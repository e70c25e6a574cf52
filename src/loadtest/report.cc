#include "loadtest/report.h"

#include <algorithm>
#include <cmath>
#include <utility>

#include "base/status.h"

namespace strata::loadtest {

using nlohmann::json;

namespace {

double R3(double x) { return std::round(x * 1000) / 1000; }

std::string Esc(const std::string& s) {
  std::string o;
  for (char c : s) {
    if (c == '<') o += "&lt;";
    else if (c == '>') o += "&gt;";
    else if (c == '&') o += "&amp;";
    else if (c == '"') o += "&quot;";
    else o += c;
  }
  return o;
}

std::string Num(double v) {
  if (v == 0) return "0";
  if (std::fabs(v) >= 10000) return StrFormat("%.0fk", v / 1000);
  if (std::fabs(v) >= 100) return StrFormat("%.0f", v);
  if (std::fabs(v) >= 1) return StrFormat("%g", std::round(v * 10) / 10);
  return StrFormat("%g", std::round(v * 1000) / 1000);
}

struct Series {
  Series(std::string n, std::string c, bool d = false, bool r = false)
      : name(std::move(n)), color(std::move(c)), dashed(d), right(r) {}
  std::string name, color;
  bool dashed;
  bool right;  // plotted against the right axis
  std::vector<double> y;
};

constexpr double kW = 900, kLeft = 80, kRight = 820, kPanelH = 230;

// One panel: frame, grid, ticks on the left (and right) axis, the series and a legend.
void Panel(std::string* o, double top, const std::string& title, const std::string& left_label,
           const std::string& right_label, const std::vector<std::string>& xs,
           const std::vector<Series>& series) {
  const double bottom = top + kPanelH;
  double lmax = 0, rmax = 0;
  for (const Series& s : series)
    for (double v : s.y) (s.right ? rmax : lmax) = std::max(s.right ? rmax : lmax, v);
  const auto lt = NiceTicks(lmax, 5), rt = NiceTicks(rmax, 5);
  const double ltop = lt.back(), rtop = rt.back();
  auto px = [&](size_t i) {
    return xs.size() == 1
               ? (kLeft + kRight) / 2
               : kLeft + 40 + (kRight - kLeft - 80) * static_cast<double>(i) / (xs.size() - 1);
  };
  auto py = [&](double v, bool right) { return bottom - kPanelH * v / (right ? rtop : ltop); };
  *o += StrFormat("<text x=\"%g\" y=\"%g\" class=\"title\">%s</text>\n", kLeft, top - 28,
                  Esc(title).c_str());
  for (double v : lt) {
    *o += StrFormat("<line x1=\"%g\" y1=\"%.1f\" x2=\"%g\" y2=\"%.1f\" class=\"grid\"/>\n", kLeft,
                    py(v, false), kRight, py(v, false));
    *o += StrFormat("<text x=\"%g\" y=\"%.1f\" class=\"tick\" text-anchor=\"end\">%s</text>\n",
                    kLeft - 6, py(v, false) + 4, Num(v).c_str());
  }
  if (!right_label.empty())
    for (double v : rt)
      *o += StrFormat("<text x=\"%g\" y=\"%.1f\" class=\"tick\">%s</text>\n", kRight + 6,
                      py(v, true) + 4, Num(v).c_str());
  *o += StrFormat("<rect x=\"%g\" y=\"%g\" width=\"%g\" height=\"%g\" class=\"frame\"/>\n", kLeft,
                  top, kRight - kLeft, kPanelH);
  for (size_t i = 0; i < xs.size(); ++i) {
    *o += StrFormat("<line x1=\"%.1f\" y1=\"%g\" x2=\"%.1f\" y2=\"%g\" class=\"axis\"/>\n", px(i),
                    bottom, px(i), bottom + 5);
    *o += StrFormat("<text x=\"%.1f\" y=\"%g\" class=\"tick\" text-anchor=\"middle\">%s</text>\n",
                    px(i), bottom + 18, Esc(xs[i]).c_str());
  }
  *o += StrFormat(
      "<text transform=\"translate(%g,%g) rotate(-90)\" class=\"label\" "
      "text-anchor=\"middle\">%s</text>\n",
      kLeft - 52, top + kPanelH / 2, Esc(left_label).c_str());
  if (!right_label.empty())
    *o += StrFormat(
        "<text transform=\"translate(%g,%g) rotate(90)\" class=\"label\" "
        "text-anchor=\"middle\">%s</text>\n",
        kRight + 50, top + kPanelH / 2, Esc(right_label).c_str());
  double lx = kLeft;
  for (const Series& s : series) {
    std::string pts;
    for (size_t i = 0; i < s.y.size(); ++i)
      pts += StrFormat("%.1f,%.1f ", px(i), py(s.y[i], s.right));
    const char* dash = s.dashed ? " stroke-dasharray=\"6 4\"" : "";
    *o +=
        StrFormat("<polyline points=\"%s\" fill=\"none\" stroke=\"%s\" stroke-width=\"2.2\"%s/>\n",
                  pts.c_str(), s.color.c_str(), dash);
    for (size_t i = 0; i < s.y.size(); ++i)
      *o += StrFormat(
          "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3.5\" fill=\"%s\"><title>%s %s: "
          "%s</title></circle>\n",
          px(i), py(s.y[i], s.right), s.color.c_str(), Esc(s.name).c_str(), Esc(xs[i]).c_str(),
          Num(s.y[i]).c_str());
    *o += StrFormat(
        "<line x1=\"%g\" y1=\"%g\" x2=\"%g\" y2=\"%g\" stroke=\"%s\" stroke-width=\"2.2\"%s/>\n",
        lx, top - 12, lx + 22, top - 12, s.color.c_str(), dash);
    *o += StrFormat("<text x=\"%g\" y=\"%g\" class=\"legend\">%s</text>\n", lx + 27, top - 8,
                    Esc(s.name).c_str());
    lx += 44 + 7.4 * static_cast<double>(s.name.size());
  }
}

}  // namespace

std::vector<double> NiceTicks(double max, int target) {
  if (!(max > 0) || !std::isfinite(max)) return {0, 1};
  const double raw = max / std::max(1, target);
  const double mag = std::pow(10, std::floor(std::log10(raw)));
  double step = mag;
  for (double m : {1.0, 2.0, 5.0, 10.0})
    if (raw <= m * mag * (1 + 1e-9)) {
      step = m * mag;
      break;
    }
  std::vector<double> t;
  for (int i = 0;; ++i) {
    t.push_back(step * i);
    if (step * i >= max * (1 - 1e-9)) break;
  }
  return t;
}

json DistJson(const Dist& d) {
  return {{"count", d.count}, {"mean", R3(d.mean)}, {"median", R3(d.median)},
          {"std", R3(d.std)}, {"p50", R3(d.p50)},   {"p90", R3(d.p90)},
          {"p99", R3(d.p99)}, {"min", R3(d.min)},   {"max", R3(d.max)}};
}

json LevelJson(const LevelRun& run) {
  const LevelMetrics& m = run.metrics;
  json j = {{"label", run.level.Label()},
            {"concurrency", run.level.concurrency},
            {"rate", run.level.rate > 0 ? json(run.level.rate) : json(nullptr)},
            {"requests", m.requests},
            {"completed", m.completed},
            {"failed", m.failed},
            {"errors", m.errors},
            {"duration_s", R3(m.duration_s)},
            {"total_input_tokens", m.total_input},
            {"total_output_tokens", m.total_output},
            {"request_throughput", R3(m.request_throughput)},
            {"output_throughput", R3(m.output_throughput)},
            {"total_token_throughput", R3(m.total_token_throughput)},
            {"ttft_ms", DistJson(m.ttft)},
            {"tpot_ms", DistJson(m.tpot)},
            {"itl_ms", DistJson(m.itl)},
            {"e2el_ms", DistJson(m.e2el)}};
  if (!m.first_error.empty()) j["first_error"] = m.first_error;
  return j;
}

json ReportJson(const LoadOptions& o, const std::string& endpoint_path,
                const std::vector<LevelRun>& runs) {
  json levels = json::array();
  for (const LevelRun& r : runs) levels.push_back(LevelJson(r));
  return {{"tool", "strata loadtest"},
          {"definitions", "vLLM benchmarks/benchmark_serving.py (docs/loadtest.md)"},
          {"url", o.url},
          {"endpoint", endpoint_path},
          {"model", o.model},
          {"stream", o.call.stream},
          {"prompt_tokens", o.prompts_file.empty() ? json(o.prompt_tokens) : json(nullptr)},
          {"prompts_file", o.prompts_file.empty() ? json(nullptr) : json(o.prompts_file)},
          {"max_tokens", o.output_tokens},
          {"ignore_eos", o.ignore_eos},
          {"requests_per_level", o.duration_s > 0 ? json(nullptr) : json(o.requests)},
          {"duration_per_level_s", o.duration_s > 0 ? json(o.duration_s) : json(nullptr)},
          {"levels", levels}};
}

std::string LevelText(const LevelRun& run) {
  const LevelMetrics& m = run.metrics;
  std::string o = StrFormat("=============== %-18s ===============\n", run.level.Label().c_str());
  auto row = [&o](const char* k, const std::string& v) {
    o += StrFormat("%-34s %s\n", k, v.c_str());
  };
  row("Successful requests:", StrFormat("%zu / %zu", m.completed, m.requests));
  for (const auto& [kind, n] : m.errors)
    row(StrFormat("  failed (%s):", kind.c_str()).c_str(), std::to_string(n));
  if (!m.first_error.empty()) row("  first error:", m.first_error.substr(0, 100));
  row("Duration (s):", StrFormat("%.2f", m.duration_s));
  row("Total input / output tokens:",
      StrFormat("%lld / %lld", static_cast<long long>(m.total_input),
                static_cast<long long>(m.total_output)));
  row("Request throughput (req/s):", StrFormat("%.2f", m.request_throughput));
  row("Output token throughput (tok/s):", StrFormat("%.2f", m.output_throughput));
  row("Total token throughput (tok/s):", StrFormat("%.2f", m.total_token_throughput));
  o += StrFormat("%-12s %10s %10s %10s %10s\n", "(ms)", "mean", "p50", "p90", "p99");
  auto dist = [&o](const char* k, const Dist& d) {
    if (d.count)
      o += StrFormat("%-12s %10.2f %10.2f %10.2f %10.2f\n", k, d.mean, d.p50, d.p90, d.p99);
  };
  dist("TTFT", m.ttft);
  dist("TPOT", m.tpot);
  dist("ITL", m.itl);
  dist("E2E", m.e2el);
  return o;
}

std::string RenderSvg(const std::string& title, const std::vector<LevelRun>& runs) {
  std::vector<std::string> xs;
  Series out{"output tok/s", "#1f77b4"}, total{"total tok/s", "#1f77b4", true},
      req{"requests/s", "#ff7f0e", false, true};
  Series ttft50{"TTFT p50", "#2ca02c"}, ttft99{"TTFT p99", "#2ca02c", true},
      tpot{"TPOT mean", "#9467bd"}, itl99{"ITL p99", "#9467bd", true},
      e2e{"E2E p50 (right axis)", "#d62728", false, true};
  bool rate = false;
  for (const LevelRun& r : runs) {
    rate = rate || r.level.rate > 0;
    xs.push_back(r.level.rate > 0 ? Num(r.level.rate) : std::to_string(r.level.concurrency));
    const LevelMetrics& m = r.metrics;
    out.y.push_back(m.output_throughput);
    total.y.push_back(m.total_token_throughput);
    req.y.push_back(m.request_throughput);
    ttft50.y.push_back(m.ttft.p50);
    ttft99.y.push_back(m.ttft.p99);
    tpot.y.push_back(m.tpot.mean);
    itl99.y.push_back(m.itl.p99);
    e2e.y.push_back(m.e2el.p50);
  }
  const double h = 2 * kPanelH + 205;
  std::string o = StrFormat(
      "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%g\" height=\"%g\" viewBox=\"0 0 %g %g\" "
      "font-family=\"DejaVu Sans, Helvetica, Arial, sans-serif\">\n",
      kW, h, kW, h);
  o += "<style>.title{font-size:15px;font-weight:bold;fill:#222}.tick{font-size:11px;fill:#444}"
       ".label{font-size:12px;fill:#333}.legend{font-size:12px;fill:#333}.grid{stroke:#e4e4e4}"
       ".frame{fill:none;stroke:#888}.axis{stroke:#888}</style>\n";
  o += StrFormat("<rect width=\"%g\" height=\"%g\" fill=\"white\"/>\n", kW, h);
  o += StrFormat(
      "<text x=\"%g\" y=\"24\" class=\"title\" text-anchor=\"middle\" "
      "style=\"font-size:17px\">%s</text>\n",
      kW / 2, Esc(title).c_str());
  std::vector<Series> thr = {out, total};
  if (std::any_of(req.y.begin(), req.y.end(), [](double v) { return v > 0; })) thr.push_back(req);
  Panel(&o, 80, "Throughput", "tokens/s", "requests/s", xs, thr);
  std::vector<Series> lat = {e2e};
  if (std::any_of(ttft50.y.begin(), ttft50.y.end(), [](double v) { return v > 0; }))
    lat = {ttft50, ttft99, tpot, itl99, e2e};
  Panel(&o, 80 + kPanelH + 85, "Latency", "milliseconds", "E2E milliseconds", xs, lat);
  o += StrFormat("<text x=\"%g\" y=\"%g\" class=\"label\" text-anchor=\"middle\">%s</text>\n",
                 (kLeft + kRight) / 2, h - 12,
                 rate ? "request rate (requests/s)" : "concurrency (requests in flight)");
  o += "</svg>\n";
  return o;
}

}  // namespace strata::loadtest
