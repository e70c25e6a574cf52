#include "hub/progress.h"

#include <cstdio>
#include <unistd.h>

#include "base/status.h"

namespace strata::hub {

std::string HumanBytes(double b) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  int u = 0;
  while (b >= 1024 && u < 4) { b /= 1024; ++u; }
  return u == 0 ? StrFormat("%.0f %s", b, units[u]) : StrFormat("%.1f %s", b, units[u]);
}

Progress::Progress(std::string label, uint64_t total, uint64_t start)
    : label_(std::move(label)), total_(total), start_(start), tty_(isatty(STDERR_FILENO) != 0),
      t0_(std::chrono::steady_clock::now()), last_(t0_) {}

void Progress::Update(uint64_t done) {
  const auto now = std::chrono::steady_clock::now();
  const double since = std::chrono::duration<double>(now - last_).count();
  if (tty_) {
    if (since < 0.1) return;
  } else {
    const int decile = total_ ? static_cast<int>(10 * done / total_) : -1;
    if (decile == last_decile_ && since < 5) return;
    last_decile_ = decile;
  }
  last_ = now;
  Draw(done, false);
}

void Progress::Finish() {
  if (finished_) return;
  finished_ = true;
  if (!tty_ && last_decile_ == 10) return;  // the 100% line is already out
  Draw(total_ ? total_ : start_, true);
}

void Progress::Draw(uint64_t done, bool final) {
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0_).count();
  const double rate = secs > 0 && done > start_ ? static_cast<double>(done - start_) / secs : 0;
  std::string eta = "?";
  if (total_ && rate > 0) {
    const double left = static_cast<double>(total_ > done ? total_ - done : 0) / rate;
    eta = StrFormat("%dm%02ds", static_cast<int>(left) / 60, static_cast<int>(left) % 60);
  }
  const double pct = total_ ? 100.0 * static_cast<double>(done) / static_cast<double>(total_) : 0;
  std::string line;
  if (tty_) {
    const int width = 30, fill = total_ ? static_cast<int>(pct * width / 100) : 0;
    line = "\r" + label_ + " [" + std::string(fill, '#') + std::string(width - fill, ' ') + "] ";
  } else {
    line = label_ + ": ";
  }
  line += total_ ? StrFormat("%5.1f%% %s / %s", pct, HumanBytes(done).c_str(),
                             HumanBytes(total_).c_str())
                 : HumanBytes(done);
  line += StrFormat(" %s/s ETA %s", HumanBytes(rate).c_str(), final ? "0m00s" : eta.c_str());
  std::fprintf(stderr, "%s%s", line.c_str(), tty_ && !final ? "   " : "\n");
  std::fflush(stderr);
}

}  // namespace strata::hub
