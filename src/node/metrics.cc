#include "node/metrics.h"

#include <sys/resource.h>
#include <sys/stat.h>

#include "base/mmap.h"
#include "base/status.h"

namespace strata::node {

using ::strata::http::PromCounter;
using ::strata::http::PromHeader;
using ::strata::http::PromMetric;

Metrics::Metrics()
    : ttft_({0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60}),
      itl_({0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5}) {}

void Metrics::ObserveTtft(double s) {
  std::lock_guard<std::mutex> lock(mu_);
  ttft_.Observe(s);
}
void Metrics::ObserveInterToken(double s) {
  std::lock_guard<std::mutex> lock(mu_);
  itl_.Observe(s);
}
void Metrics::CountHttp(int status) {
  std::lock_guard<std::mutex> lock(mu_);
  http_[status]++;
}
void Metrics::CountRejected() {
  std::lock_guard<std::mutex> lock(mu_);
  rejected_++;
}

double ProcessCpuSeconds() {
  rusage ru{};
  if (getrusage(RUSAGE_SELF, &ru) != 0) return 0;
  return static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
         1e-6 * static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec);
}

void Metrics::RenderSpec(const SchedulerStats& s, std::string* out) {
  auto metric = [out](const char* name, const char* type, const char* help, double value) {
    PromMetric(name, type, help, value, out);
  };
  PromCounter("strata_spec_draft_tokens_total",
              "Speculative decoding: tokens drafted (draft model or n-gram lookup).",
              s.spec_drafted, out);
  PromCounter("strata_spec_accepted_tokens_total",
              "Speculative decoding: drafted tokens the model accepted.", s.spec_accepted, out);
  PromCounter("strata_spec_verify_steps_total",
              "Speculative decoding: sequence steps that verified a draft.", s.spec_verified, out);
  PromCounter("strata_spec_paused_steps_total",
              "Speculative decoding: steps without drafting because more sequences ran than "
              "--spec-max-seqs.",
              s.spec_paused, out);
  metric("strata_spec_draft_seconds_total", "counter", "Speculative decoding: time spent drafting.",
         s.spec_draft_seconds);
  metric("strata_spec_acceptance_ratio", "gauge",
         "Speculative decoding: accepted / drafted tokens so far.",
         s.spec_drafted > 0 ? static_cast<double>(s.spec_accepted) / s.spec_drafted : 0.0);
  // Each verifying step emits its accepted tokens plus one of the model's own: tokens per
  // model step of a drafting sequence, the speedup before the cost of drafting and verifying.
  metric("strata_spec_tokens_per_step", "gauge",
         "Speculative decoding: tokens generated per model step of a drafting sequence "
         "((accepted + verify steps) / verify steps; 1 without speculation).",
         s.spec_verified > 0
             ? static_cast<double>(s.spec_accepted + s.spec_verified) / s.spec_verified
             : 1.0);
}

std::string Metrics::Render(const SchedulerStats* st, const std::string& model_path) const {
  std::string out;
  const SchedulerStats s = st ? *st : SchedulerStats{};
  auto metric = [&out](const char* name, const char* type, const char* help, double value) {
    PromMetric(name, type, help, value, &out);
  };
  metric("strata_requests_running", "gauge", "Requests holding a sequence slot.", s.running);
  metric("strata_requests_waiting", "gauge", "Requests queued for a slot.", s.waiting);
  metric("strata_slots_total", "gauge", "Sequence slots (--parallel).", s.slots_total);
  PromCounter("strata_prompt_tokens_total", "Prompt tokens of admitted requests.", s.prompt_tokens,
              &out);
  PromCounter("strata_prompt_tokens_cached_total",
              "Prompt tokens whose KV came from the prompt cache.", s.cached_tokens, &out);
  PromCounter("strata_prompt_prefills_total",
              "Requests whose prompt was evaluated (not wholly reused: n > 1 choices share one).",
              s.prefills, &out);
  PromCounter("strata_generation_tokens_total", "Generated (sampled) tokens.", s.generated_tokens,
              &out);
  PromCounter("strata_evaluated_tokens_total", "Tokens run through the model.", s.evaluated_tokens,
              &out);
  PromCounter("strata_batch_steps_total", "Batched forward steps.", s.steps, &out);
  PromCounter("strata_requests_finished_total", "Requests finished (any reason).", s.requests_done,
              &out);
  metric("strata_kv_cache_used_tokens", "gauge", "KV cache positions in use.", s.kv_used);
  metric("strata_kv_cache_usage_ratio", "gauge", "KV cache positions in use / total.",
         s.kv_total > 0 ? static_cast<double>(s.kv_used) / s.kv_total : 0.0);
  RenderSpec(s, &out);
  {
    std::lock_guard<std::mutex> lock(mu_);
    PromCounter("strata_requests_rejected_total",
                "Requests refused with 503 because the wait queue was full.", rejected_, &out);
    out +=
        "# HELP strata_http_responses_total HTTP responses by status code.\n"
        "# TYPE strata_http_responses_total counter\n";
    for (const auto& [code, n] : http_)
      out += "strata_http_responses_total{code=\"" + std::to_string(code) + "\"} " +
             std::to_string(n) + "\n";
    PromHeader("strata_time_to_first_token_seconds", "histogram",
               "Time from request arrival to the first generated token.", &out);
    ttft_.Render("strata_time_to_first_token_seconds", "", &out);
    PromHeader("strata_inter_token_latency_seconds", "histogram", "Time between generated tokens.",
               &out);
    itl_.Render("strata_inter_token_latency_seconds", "", &out);
  }
  metric("process_cpu_seconds_total", "counter", "User and system CPU time.", ProcessCpuSeconds());
  metric("process_resident_memory_bytes", "gauge", "Resident set size.",
         static_cast<double>(CurrentRssBytes()));
  struct stat sb {};
  if (!model_path.empty() && stat(model_path.c_str(), &sb) == 0) {
    metric("strata_model_file_bytes", "gauge", "Size of the model file.",
           static_cast<double>(sb.st_size));
    metric("strata_model_disk_usage_bytes", "gauge", "Disk blocks used by the model file.",
           static_cast<double>(sb.st_blocks) * 512.0);
  }
  return out;
}

}  // namespace strata::node
