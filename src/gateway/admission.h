// Admission control of the gateway: a global concurrency limit with a bounded FIFO wait
// queue (each waiter gives up after a timeout), on an Asio event loop. Thread-safe.
#pragma once

#include <chrono>
#include <deque>
#include <memory>
#include <mutex>
#include <utility>

#include <boost/asio.hpp>

namespace strata::gateway {

enum class AdmitResult { kAdmitted, kQueueFull, kTimeout };

class Admission {
 public:
  // max_concurrent 0: unlimited.
  Admission(int max_concurrent, int max_queue, std::chrono::milliseconds queue_timeout)
      : max_(max_concurrent), max_queue_(max_queue), timeout_(queue_timeout) {}

  // Takes a slot, waiting in the queue when all are busy. Call Release after kAdmitted.
  boost::asio::awaitable<AdmitResult> Acquire();
  void Release();

  int active() const;
  int queued() const;

 private:
  struct Waiter {
    explicit Waiter(const boost::asio::any_io_executor& ex) : executor(ex), timer(ex) {}
    boost::asio::any_io_executor executor;
    boost::asio::steady_timer timer;
    bool granted = false;  // under mu_
  };

  const int max_, max_queue_;
  const std::chrono::milliseconds timeout_;
  mutable std::mutex mu_;
  int active_ = 0;
  std::deque<std::shared_ptr<Waiter>> queue_;
};

}  // namespace strata::gateway
