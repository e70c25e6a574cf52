#include "http/conn_limit.h"

namespace strata::http {

ConnectionTracker::Decision ConnectionTracker::Acquire(const std::string& client) {
  std::lock_guard<std::mutex> lock(mu_);
  if (max_total_ > 0 && total_ >= max_total_) return Decision::kServerFull;
  int& mine = per_client_[client];
  if (max_per_client_ > 0 && mine >= max_per_client_) {
    if (mine == 0) per_client_.erase(client);
    return Decision::kClientFull;
  }
  ++mine;
  ++total_;
  return Decision::kAccepted;
}

void ConnectionTracker::ForceAcquire(const std::string& client) {
  std::lock_guard<std::mutex> lock(mu_);
  ++per_client_[client];
  ++total_;
}

void ConnectionTracker::Release(const std::string& client) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = per_client_.find(client);
  if (it == per_client_.end()) return;
  --total_;
  if (--it->second <= 0) per_client_.erase(it);
}

int ConnectionTracker::total() const {
  std::lock_guard<std::mutex> lock(mu_);
  return total_;
}

int ConnectionTracker::of(const std::string& client) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = per_client_.find(client);
  return it == per_client_.end() ? 0 : it->second;
}

}  // namespace strata::http
