#include "base/progress.h"

#include <unistd.h>

#include <cinttypes>
#include <cstdlib>
#include <cstring>

namespace strata {
namespace {

constexpr int kQuietMs = 300;          // nothing is drawn for work quicker than this
constexpr int kTtyPeriodMs = 100;      // terminal redraw period
constexpr int kPlainPeriodMs = 5000;   // plain lines: at most one per period ...
constexpr int kPlainStepPct = 10;      // ... and only after this much more progress

std::string ClockText(double s) {
  if (s < 0 || s > 360000) return "--:--";
  const int64_t t = static_cast<int64_t>(s + 0.5);
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
  if (u == 0)
    std::snprintf(buf, sizeof buf, "%" PRIu64 " B", n);
  else
    std::snprintf(buf, sizeof buf, "%.1f %s", v, units[u]);
  return buf;
}

std::string Progress::Render(const std::string& label, uint64_t done, uint64_t total, Unit unit,
                             double seconds, int width) {
  const double rate = seconds > 0 ? static_cast<double>(done) / seconds : 0;
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
    const double eta = rate > 0 && done < total ? static_cast<double>(total - done) / rate : 0;
    line += "  ETA " + (done >= total ? std::string("0:00") : rate > 0 ? ClockText(eta) : "--:--");
  } else {
    line += Amount(done, unit) + "  " + rate_text;
  }
  return line;
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

void Progress::SetTotal(uint64_t total) { total_.store(total, std::memory_order_relaxed); }

void Progress::Finish() { MaybeDraw(true); }

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
  const double secs = std::chrono::duration<double>(now - start_).count();
  const int pct = total > 0 ? static_cast<int>(100.0 * static_cast<double>(done) /
                                               static_cast<double>(total)) : -1;
  if (tty_) {
    if (final && !drawn_) {
      finished_ = true;
      return;
    }
    if (!final && ms(now - last_draw_) < kTtyPeriodMs && drawn_) return;
    std::fprintf(out_, "\r\033[K%s%s", Render(label_, done, total, unit_, secs, 30).c_str(),
                 final ? "\n" : "");
  } else {
    if (final) {
      if (!drawn_) {
        finished_ = true;
        return;
      }
    } else if (drawn_ && (ms(now - last_draw_) < kPlainPeriodMs || pct < last_pct_ + kPlainStepPct)) {
      return;
    }
    if (total > 0)
      std::fprintf(out_, "%s: %d%% (%s of %s)%s\n", label_.c_str(), pct,
                   Amount(done, unit_).c_str(), Amount(total, unit_).c_str(),
                   final ? ", done" : "");
    else
      std::fprintf(out_, "%s: %s%s\n", label_.c_str(), Amount(done, unit_).c_str(),
                   final ? ", done" : "");
  }
  std::fflush(out_);
  drawn_ = true;
  last_draw_ = now;
  last_pct_ = pct;
  if (final) finished_ = true;
}

}  // namespace strata
