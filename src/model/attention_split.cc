// Split-KV ("flash-decoding") attention for the rows of a batch that see a long context: each
// such row's visible positions are cut into fixed chunks (kernels::kSplitKvChunk), the chunks
// of all rows are shared out to the threads, and the last thread to finish a row merges its
// partials in chunk order. One decode token deep into a context then keeps every thread busy
// and reads each K / V row once for all the query heads that share it. Results depend only on
// each row's own inputs and position, never on the thread count or the batch around it.
#include <algorithm>
#include <atomic>

#include "kernels/kernels.h"
#include "model/forward.h"

namespace strata {

bool Forward::SplitRow(const Batch& b, int t) { return b.pos[t] + 1 >= kernels::kSplitKvMinKv; }

int Forward::AttentionSplit(const Batch& b, int l) {
  split_rows_.clear();
  split_first_.clear();
  task_row_.clear();
  for (int t = 0; t < b.size(); ++t) {
    if (!SplitRow(b, t)) continue;
    const int r = static_cast<int>(split_rows_.size());
    split_rows_.push_back(t);
    split_first_.push_back(static_cast<int64_t>(task_row_.size()));
    task_row_.insert(task_row_.end(), kernels::SplitKvChunks(b.pos[t] + 1), r);
  }
  const int rows = static_cast<int>(split_rows_.size());
  if (rows == 0) return 0;
  split_first_.push_back(static_cast<int64_t>(task_row_.size()));
  split_left_.resize(static_cast<size_t>(rows));
  for (int r = 0; r < rows; ++r)
    split_left_[r] = static_cast<int32_t>(split_first_[r + 1] - split_first_[r]);
  // Rows in groups whose partials fit kMaxPartialFloats (a long prompt chunk deep into a
  // context has many rows of many chunks each); one pool run per group.
  constexpr int64_t kMaxPartialFloats = int64_t{4} << 20;
  const int64_t per_task = static_cast<int64_t>(model_.config().n_heads) *
                           kernels::AttentionPartialStride(model_.config().head_dim);
  for (int r0 = 0; r0 < rows;) {
    int r1 = r0 + 1;
    while (r1 < rows && (split_first_[r1 + 1] - split_first_[r0]) * per_task <= kMaxPartialFloats)
      ++r1;
    AttentionSplitRows(b, l, r0, r1);
    r0 = r1;
  }
  return rows;
}

void Forward::AttentionSplitRows(const Batch& b, int l, int r0, int r1) {
  const ModelConfig& c = model_.config();
  const AttentionShape sh = AttentionShapeOf();
  const int64_t first = split_first_[r0], tasks = split_first_[r1] - first;
  const int64_t stride = kernels::AttentionPartialStride(sh.hd);
  const int64_t per_task = static_cast<int64_t>(c.n_heads) * stride;
  if (partials_.size() < static_cast<size_t>(tasks * per_task)) partials_.resize(tasks * per_task);
  const int per_call = std::min(sh.group, kernels::kMaxAttnHeads);
  const size_t per_thread = static_cast<size_t>(per_call) * kernels::kSplitKvChunk;
  if (split_scratch_.size() < sh.nth * per_thread) split_scratch_.resize(sh.nth * per_thread);
  const size_t k_head = RowBytesUnchecked(cache_->k_type(), sh.hd);
  const size_t v_head = RowBytesUnchecked(cache_->v_type(), sh.hd);
  const size_t k_row = cache_->k_row_bytes(), v_row = cache_->v_row_bytes();
  std::atomic<int64_t> next{first};
  auto work = [&](int ith, int) {
    float* scratch = split_scratch_.data() + static_cast<size_t>(ith) * per_thread;
    for (int64_t task = next.fetch_add(1); task < first + tasks; task = next.fetch_add(1)) {
      const int r = task_row_[static_cast<size_t>(task)];
      const int t = split_rows_[r];
      const int64_t j0 = (task - split_first_[r]) * kernels::kSplitKvChunk;
      float* partial = partials_.data() + (task - first) * per_task;
      kernels::KvAttention a;
      a.k_type = cache_->k_type();
      a.k_row_bytes = k_row;
      a.v_type = cache_->v_type();
      a.v_row_bytes = v_row;
      a.n_kv = std::min<int64_t>(kernels::kSplitKvChunk, b.pos[t] + 1 - j0);
      a.head_dim = sh.hd;
      a.scale = sh.scale;
      for (int kvh = 0; kvh < c.n_kv_heads; ++kvh) {
        a.k = cache_->KRows(l, b.seq[t]) + j0 * k_row + kvh * k_head;
        a.v = cache_->VRows(l, b.seq[t]) + j0 * v_row + kvh * v_head;
        for (int h0 = 0; h0 < sh.group; h0 += per_call) {
          a.n_heads = std::min(per_call, sh.group - h0);
          const int h = kvh * sh.group + h0;
          kernels::AttentionKvPartial(a, q_.data() + t * sh.QD + static_cast<int64_t>(h) * sh.hd,
                                      partial + h * stride, scratch);
        }
      }
      // The thread that completes a row's last chunk merges it.
      if (std::atomic_ref<int32_t>(split_left_[r]).fetch_sub(1, std::memory_order_acq_rel) == 1)
        kernels::MergeAttentionPartials(partials_.data() + (split_first_[r] - first) * per_task,
                                        split_first_[r + 1] - split_first_[r], c.n_heads, sh.hd,
                                        attn_.data() + t * sh.QD);
    }
  };
  RunTasks(work);
}

}  // namespace strata
