// The planner's speed measurement: it runs the engine's matvec kernel, so it lives apart from
// the planner and the cluster description (library strata_plan_probe, linked by the CLI only;
// the gateway links strata_cluster and never the engine).
#pragma once

namespace strata::cluster {

// Speed of this machine: GB/s of Q8_0 weights streamed by the single-token matvec kernel on
// `threads` threads (0: all cores), over a 64 MiB matrix (beyond caches), for about
// `seconds`. Higher is faster. The result is passed to the planner as PlanNode::speed.
double MeasureNodeSpeed(double seconds = 0.5, int threads = 0);

}  // namespace strata::cluster
