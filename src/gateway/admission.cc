#include "gateway/admission.h"

#include <algorithm>

namespace strata::gateway {

namespace asio = boost::asio;

asio::awaitable<AdmitResult> Admission::Acquire() {
  std::shared_ptr<Waiter> w;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (max_ <= 0 || active_ < max_) {
      ++active_;
      co_return AdmitResult::kAdmitted;
    }
    if (static_cast<int>(queue_.size()) >= max_queue_) co_return AdmitResult::kQueueFull;
    w = std::make_shared<Waiter>(co_await asio::this_coro::executor);
    w->timer.expires_after(timeout_);
    queue_.push_back(w);
  }
  boost::system::error_code ec;
  co_await w->timer.async_wait(asio::redirect_error(asio::use_awaitable, ec));
  std::lock_guard<std::mutex> lock(mu_);
  if (w->granted) co_return AdmitResult::kAdmitted;  // the slot was handed over
  queue_.erase(std::remove(queue_.begin(), queue_.end(), w), queue_.end());
  co_return AdmitResult::kTimeout;
}

void Admission::Release() {
  std::lock_guard<std::mutex> lock(mu_);
  if (queue_.empty()) {
    active_ = std::max(0, active_ - 1);
    return;
  }
  // Hand the slot to the oldest waiter (active_ unchanged) and wake it on its executor.
  std::shared_ptr<Waiter> w = queue_.front();
  queue_.pop_front();
  w->granted = true;
  asio::post(w->executor, [w] { w->timer.cancel(); });
}

int Admission::active() const {
  std::lock_guard<std::mutex> lock(mu_);
  return active_;
}

int Admission::queued() const {
  std::lock_guard<std::mutex> lock(mu_);
  return static_cast<int>(queue_.size());
}

}  // namespace strata::gateway
