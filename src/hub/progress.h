// Download progress on stderr: a redrawn bar with rate and ETA on a terminal, plain lines
// (at most one per ~10% or 5 s) otherwise. A minimal helper of the hub library; the lead may
// fold it into a shared one (src/base/progress.h) at merge.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

namespace strata::hub {

class Progress {
 public:
  // total = 0: unknown size. `start` bytes were already present (a resumed download).
  Progress(std::string label, uint64_t total, uint64_t start);
  void Update(uint64_t done);
  void Finish();

 private:
  void Draw(uint64_t done, bool final);
  std::string label_;
  uint64_t total_, start_;
  bool tty_;
  std::chrono::steady_clock::time_point t0_, last_;
  int last_decile_ = -1;
  bool finished_ = false;
};

// "1.5 MiB", "830 B".
std::string HumanBytes(double bytes);

}  // namespace strata::hub
