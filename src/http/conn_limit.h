// Connection accounting: a global cap and a cap per client address.
#pragma once

#include <map>
#include <mutex>
#include <string>

namespace strata::http {

class ConnectionTracker {
 public:
  enum class Decision { kAccepted, kServerFull, kClientFull };

  // max_total / max_per_client: 0 means unlimited.
  ConnectionTracker(int max_total, int max_per_client)
      : max_total_(max_total), max_per_client_(max_per_client) {}

  // Counts a new connection from client unless a cap is reached.
  Decision Acquire(const std::string& client);
  // Counts a connection whatever the caps (one that replaces a connection being evicted).
  void ForceAcquire(const std::string& client);
  // Ends a connection counted by Acquire or ForceAcquire.
  void Release(const std::string& client);

  int total() const;
  int of(const std::string& client) const;

 private:
  const int max_total_, max_per_client_;
  mutable std::mutex mu_;
  int total_ = 0;
  std::map<std::string, int> per_client_;
};

}  // namespace strata::http
