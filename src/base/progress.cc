#include "base/progress.h"

#include <unistd.h>

#include <algorithm>
#include <cinttypes>
#include <cmath>
#include <cstdlib>
#include <cstring>

namespace strata {
namespace {

constexpr int kQuietMs = 300;         // nothing is drawn for work quicker than this
constexpr int kTtyPeriodMs = 100;     // terminal redraw period
constexpr int kPlainPeriodMs = 5000;  // plain lines: one after this long without one ...
constexpr int kPlainStepPct = 10;     // ... or at each further step of this many percent

std::string ClockText(double s) {
  if (s < 0 || s > 360000) return "--:--";
  const int64_t t = std::llround(s);
  char buf[32];
  if (t >= 3600)
    std::snprintf(buf, sizeof buf, "%" PRId64 ":%02d:%02d", t / 3600, static_cast<int>(t / 60 % 60),
                  static_cast<int>(t % 60));
  else
    std::snprintf(buf, sizeof buf, "%d:%02d", static_cast<int>(t / 60), static_cast<int>(t % 60));
  return buf;
}

}  // namespace

std::string Progress::Amount(uint64_t n, Unit unit) {
  char buf[48];
  if (unit == Unit::kItems) {
    std::snprintf(buf, sizeof buf, "%" PRIu64, n);
    return buf;
  }
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double v = static_cast<double>(n);
  int u = 0;
  while (v >= 1024.0 && u < 4) {
    v /= 1024.0;
    ++u;
  }
  if (u == 0) std::snprintf(buf, sizeof buf, "%" PRIu64 " B", n);
  else std::snprintf(buf, sizeof buf, "%.1f %s", v, units[u]);
  return buf;
}

namespace {

// Units per second done by this run (`base` were done before it).
double RateOf(uint64_t done, uint64_t base, double seconds) {
  return seconds > 0 && done > base ? static_cast<double>(done - base) / seconds : 0;
}

// "0:07", "0:00" when done, "--:--" when unknown.
std::string EtaText(uint64_t done, uint64_t total, double rate) {
  if (done >= total) return "0:00";
  return rate > 0 ? ClockText(static_cast<double>(total - done) / rate) : "--:--";
}

}  // namespace

std::string Progress::Render(const std::string& label, uint64_t done, uint64_t total, Unit unit,
                             double seconds, int width, uint64_t base) {
  const double rate = RateOf(done, base, seconds);
  const std::string rate_text = Amount(static_cast<uint64_t>(rate), unit) + "/s";
  std::string line = label + "  ";
  if (total > 0) {
    const double f = done >= total ? 1.0 : static_cast<double>(done) / static_cast<double>(total);
    const int cells = width > 0 ? width : 0;
    const int full = static_cast<int>(f * cells);
    line += "[" + std::string(static_cast<size_t>(full), '#') +
            std::string(static_cast<size_t>(cells - full), '.') + "] ";
    char pct[16];
    std::snprintf(pct, sizeof pct, "%3d%%", static_cast<int>(f * 100));
    line += pct;
    line += "  " + Amount(done, unit) + "/" + Amount(total, unit) + "  " + rate_text;
    line += "  ETA " + EtaText(done, total, rate);
  } else {
    line += Amount(done, unit) + "  " + rate_text;
  }
  return line;
}

std::string Progress::RenderPlain(const std::string& label, uint64_t done, uint64_t total,
                                  Unit unit, double seconds, uint64_t base, bool final) {
  const double rate = RateOf(done, base, seconds);
  const std::string rate_text = Amount(static_cast<uint64_t>(rate), unit) + "/s";
  std::string line = label + ": ";
  if (total > 0) {
    const int pct = static_cast<int>(100.0 * static_cast<double>(std::min(done, total)) /
                                     static_cast<double>(total));
    line += std::to_string(pct) + "% (" + Amount(done, unit) + " of " + Amount(total, unit) + ", " +
            rate_text + ", ETA " + EtaText(done, total, rate) + ")";
  } else {
    line += Amount(done, unit) + " (" + rate_text + ")";
  }
  return final ? line + ", done" : line;
}

Progress::Progress(std::string label, uint64_t total, Unit unit, FILE* out)
    : label_(std::move(label)), unit_(unit), out_(out), start_(Clock::now()) {
  total_.store(total, std::memory_order_relaxed);
  last_draw_ = start_;
  const char* env = std::getenv("STRATA_PROGRESS");
  if (env != nullptr && std::strcmp(env, "0") == 0) enabled_ = false;
  tty_ = (env != nullptr && std::strcmp(env, "1") == 0) || isatty(fileno(out_)) == 1;
}

Progress::~Progress() { Finish(); }

void Progress::Add(uint64_t n) {
  done_.fetch_add(n, std::memory_order_relaxed);
  MaybeDraw(false);
}

void Progress::Set(uint64_t done) {
  done_.store(done, std::memory_order_relaxed);
  MaybeDraw(false);
}

void Progress::Resume(uint64_t start) {
  base_.store(start, std::memory_order_relaxed);
  Set(start);
}

void Progress::SetTotal(uint64_t total) { total_.store(total, std::memory_order_relaxed); }

void Progress::Finish() { MaybeDraw(true); }

void Progress::Abandon() {
  std::lock_guard<std::mutex> lock(mu_);
  if (finished_) return;
  finished_ = true;
  if (enabled_ && tty_ && drawn_) {
    std::fputc('\n', out_);
    std::fflush(out_);
  }
}

void Progress::MaybeDraw(bool final) {
  if (!enabled_) return;
  std::unique_lock<std::mutex> lock(mu_, std::defer_lock);
  if (final) {
    lock.lock();
  } else if (!lock.try_lock()) {
    return;  // another thread is drawing
  }
  if (finished_) return;
  const auto now = Clock::now();
  const auto ms = [](Clock::duration d) {
    return std::chrono::duration_cast<std::chrono::milliseconds>(d).count();
  };
  if (!final && ms(now - start_) < kQuietMs) return;
  const uint64_t done = done_.load(std::memory_order_relaxed);
  const uint64_t total = total_.load(std::memory_order_relaxed);
  const uint64_t base = base_.load(std::memory_order_relaxed);
  const double secs = std::chrono::duration<double>(now - start_).count();
  const int pct =
      total > 0 ? static_cast<int>(100.0 * static_cast<double>(done) / static_cast<double>(total))
                : -1;
  if (tty_) {
    if (final && !drawn_) {
      finished_ = true;
      return;
    }
    if (!final && ms(now - last_draw_) < kTtyPeriodMs && drawn_) return;
    std::fprintf(out_, "\r\033[K%s%s", Render(label_, done, total, unit_, secs, 30, base).c_str(),
                 final ? "\n" : "");
  } else {
    if (final) {
      if (!drawn_) {
        finished_ = true;
        return;
      }
    } else if (drawn_ && ms(now - last_draw_) < kPlainPeriodMs &&
               pct / kPlainStepPct == last_pct_ / kPlainStepPct) {
      return;
    }
    std::fprintf(out_, "%s\n", RenderPlain(label_, done, total, unit_, secs, base, final).c_str());
  }
  std::fflush(out_);
  drawn_ = true;
  last_draw_ = now;
  last_pct_ = pct;
  if (final) finished_ = true;
}

}  // namespace strata
