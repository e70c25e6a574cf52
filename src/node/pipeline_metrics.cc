// Per-stage pipeline metrics of the node (/metrics): compute time per token, per-hop latency
// and bytes sent per token, for the head (PipelineHead) and later stages (StageServer).
#include "http/prom.h"
#include "net/link.h"
#include "node/server_impl.h"

namespace strata::node {
namespace {

using ::strata::http::PromCounter;

void Gauge(std::string* out, const std::string& name, const char* type, const std::string& help,
           double value) {
  ::strata::http::PromMetric(name, type, help, value, out);
}

void LinkMetrics(std::string* out, const ::strata::net::LinkStats& l, uint64_t tokens) {
  Gauge(out, "strata_stage_next_connected", "gauge", "1 while the link to the next stage is up.",
        l.connected ? 1 : 0);
  PromCounter("strata_stage_next_reconnects_total",
              "Reconnections to the next stage after a lost connection.",
              l.connects > 0 ? l.connects - 1 : 0, out);
  PromCounter("strata_stage_next_failures_total", "Connections to the next stage lost.", l.failures,
              out);
  Gauge(out, "strata_stage_hop_rtt_seconds", "gauge",
        "Last Ping/Pong round trip to the next stage (network latency of the hop).",
        l.last_rtt_seconds);
  Gauge(out, "strata_stage_hop_rtt_seconds_avg", "gauge",
        "Mean Ping/Pong round trip to the next stage.",
        l.rtt_count ? l.rtt_seconds_sum / static_cast<double>(l.rtt_count) : 0.0);
  Gauge(out, "strata_stage_hop_request_seconds_avg", "gauge",
        "Mean time from sending a step to the next stage to its answer (later stages included).",
        l.requests ? l.request_seconds / static_cast<double>(l.requests) : 0.0);
  Gauge(out, "strata_stage_hop_send_seconds_per_token", "gauge",
        "Time to encode and write the steps to the next stage, per token sent (the hop's own "
        "cost on this side; the network's is strata_stage_hop_rtt_seconds).",
        l.forward_tokens ? l.forward_send_seconds / static_cast<double>(l.forward_tokens) : 0.0);
  PromCounter("strata_stage_hop_requests_total", "Steps answered by the next stage.", l.requests,
              out);
  PromCounter("strata_stage_bytes_sent_total", "Bytes sent to the next stage.", l.bytes_sent, out);
  Gauge(out, "strata_stage_bytes_sent_per_token", "gauge",
        "Bytes sent to the next stage per token computed by this stage.",
        tokens ? static_cast<double>(l.bytes_sent) / static_cast<double>(tokens) : 0.0);
}

}  // namespace

std::string Server::PipelineMetrics() const {
  std::string out;
  if (!pipeline()) return out;
  out += "# HELP strata_stage_info This node's pipeline stage.\n# TYPE strata_stage_info gauge\n";
  out += StrFormat("strata_stage_info{role=\"%s\",first_layer=\"%d\",last_layer=\"%d\"} 1\n",
                   o_.first_layer == 0 ? "head"
                   : o_.next_port      ? "middle"
                                       : "tail",
                   o_.first_layer, o_.last_layer);
  uint64_t tokens = 0;
  double compute = 0;
  if (head_ != nullptr) {
    const ::strata::pipeline::PipelineHeadStats s = head_->stats();
    tokens = s.tokens;
    compute = s.compute_seconds;
    PromCounter("strata_stage_steps_failed_total", "Pipeline steps that failed.", s.failed_steps,
                &out);
    PromCounter("strata_pipeline_outages_total",
                "Times the pipeline failed under requests (a stage died or became unreachable).",
                s.outages, &out);
    Gauge(&out, "strata_pipeline_recovering", "gauge",
          "1 while the head waits for a failed stage to come back (within the grace period).",
          s.degraded ? 1 : 0);
    if (sched_ != nullptr) {
      const SchedulerStats ss = sched_->stats();
      PromCounter("strata_pipeline_replays_total",
                  "Sequences replayed (prompt and generated ids) into a re-formed pipeline.",
                  ss.replays, &out);
      PromCounter("strata_pipeline_replayed_tokens_total", "Tokens re-evaluated by the replays.",
                  ss.replayed_tokens, &out);
      Gauge(&out, "strata_pipeline_replay_seconds_total", "counter",
            "Time from a sequence's failure to its next token after the replay, summed.",
            ss.replay_seconds);
    }
    LinkMetrics(&out, s.link, tokens);
  } else if (stage_ != nullptr) {
    const ::strata::pipeline::StageStats s = stage_->stats();
    tokens = s.tokens;
    compute = s.compute_seconds;
    PromCounter("strata_stage_requests_total", "Steps served (answered successfully).", s.requests,
                &out);
    PromCounter("strata_stage_request_errors_total", "Steps answered with an error.",
                s.request_errors, &out);
    PromCounter("strata_stage_stale_errors_total",
                "Steps refused because KV positions were lost (a stage restarted).", s.stale_errors,
                &out);
    PromCounter("strata_stage_connections_rejected_total",
                "Stage connections refused (bad handshake, authentication, malformed frames).",
                s.rejected, &out);
    PromCounter("strata_stage_bytes_upstream_total", "Bytes sent back upstream.", s.bytes_upstream,
                &out);
    ::strata::net::LinkStats l;
    if (stage_->next_stats(&l)) LinkMetrics(&out, l, tokens);
  }
  PromCounter("strata_stage_tokens_total", "Tokens run through this stage's layers.", tokens, &out);
  Gauge(&out, "strata_stage_compute_seconds_total", "counter", "Time in this stage's layers.",
        compute);
  Gauge(&out, "strata_stage_compute_seconds_per_token", "gauge",
        "Compute time of this stage per token.",
        tokens ? compute / static_cast<double>(tokens) : 0.0);
  return out;
}

}  // namespace strata::node
