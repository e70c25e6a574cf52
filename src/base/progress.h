// Progress of long work (model synthesis, quantization, model loading, downloads) on stderr.
// On a terminal: one line redrawn in place, "label  [#####.....]  42%  12.3 MiB/s  ETA 0:07".
// Otherwise (logs, pipes): a plain line at each further 10% or after 5 s without one
// ("label: 42% (1.2 GiB of 2.9 GiB, 12.3 MiB/s, ETA 0:07)").
// Thread-safe: Add() may be called from many threads at once. STRATA_PROGRESS=0 silences it,
// STRATA_PROGRESS=1 forces the terminal form.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <mutex>
#include <string>

namespace strata {

class Progress {
 public:
  enum class Unit { kBytes, kItems };
  // `total` 0: unknown (no percentage or ETA). Nothing is drawn for work quicker than
  // `quiet_ms` (default 300 ms), so short jobs stay silent.
  Progress(std::string label, uint64_t total, Unit unit = Unit::kBytes, FILE* out = stderr);
  ~Progress();  // Finish()
  Progress(const Progress&) = delete;
  Progress& operator=(const Progress&) = delete;

  void Add(uint64_t n);     // n more units done
  void Set(uint64_t done);  // absolute position
  // A resumed job: `start` units were already done before this run (the rate and ETA count
  // only what this run does).
  void Resume(uint64_t start);
  void SetTotal(uint64_t total);
  // Draws the final state (when anything was drawn) and ends the line. Idempotent.
  void Finish();
  // Work abandoned (an error): ends a terminal's line without drawing a final state.
  void Abandon();

  uint64_t done() const { return done_.load(std::memory_order_relaxed); }
  uint64_t total() const { return total_.load(std::memory_order_relaxed); }

  // The text of one terminal line, for tests: label, bar, percent, rate and ETA. The rate is
  // (done - base) / seconds.
  static std::string Render(const std::string& label, uint64_t done, uint64_t total, Unit unit,
                            double seconds, int width, uint64_t base = 0);
  // The text of one plain line (no terminal), without the newline.
  static std::string RenderPlain(const std::string& label, uint64_t done, uint64_t total, Unit unit,
                                 double seconds, uint64_t base, bool final);
  // "1.5 GiB", "12.0 MiB", "300 B" (kBytes) or "1234" (kItems).
  static std::string Amount(uint64_t n, Unit unit);

 private:
  void MaybeDraw(bool final);

  using Clock = std::chrono::steady_clock;
  std::string label_;
  std::atomic<uint64_t> done_{0}, total_{0}, base_{0};
  Unit unit_;
  FILE* out_;
  bool tty_ = false, enabled_ = true, drawn_ = false, finished_ = false;
  Clock::time_point start_, last_draw_;
  int last_pct_ = -1;
  std::mutex mu_;
};

// "1.5 MiB", "830 B": Progress::Amount in bytes.
inline std::string HumanBytes(uint64_t n) { return Progress::Amount(n, Progress::Unit::kBytes); }

}  // namespace strata
