#include "cluster/speed_probe.h"

#include <algorithm>
#include <cstdint>
#include <memory>
#include <vector>

#include "base/fp16.h"
#include "base/thread_pool.h"
#include "base/timer.h"
#include "kernels/kernels.h"
#include "tensor/dtype.h"

namespace strata::cluster {

double MeasureNodeSpeed(double seconds, int threads) {
  // A [rows, 4096] Q8_0 matrix of 64 MiB (larger than the caches), times one token: the
  // decode-step work of a layer, streamed from memory.
  constexpr int64_t kCols = 4096;
  const uint64_t row_bytes = RowBytesUnchecked(DType::Q8_0, kCols);
  const int64_t rows = static_cast<int64_t>((uint64_t{64} << 20) / row_bytes);
  const uint64_t bytes = row_bytes * static_cast<uint64_t>(rows);
  std::unique_ptr<BlockQ8_0[]> w(new BlockQ8_0[bytes / sizeof(BlockQ8_0)]);
  const uint16_t d = f32_to_fp16(1.0f / 64.0f);
  for (uint64_t b = 0; b < bytes / sizeof(BlockQ8_0); ++b) {
    w[b].d = d;
    for (int k = 0; k < 32; ++k)
      w[b].qs[k] =
          static_cast<int8_t>(static_cast<int>((b * 31 + static_cast<uint64_t>(k) * 7) % 127) - 63);
  }
  std::vector<float> x(static_cast<size_t>(kCols)), y(static_cast<size_t>(rows));
  for (int64_t k = 0; k < kCols; ++k)
    x[static_cast<size_t>(k)] = static_cast<float>((k % 17) - 8) / 8.0f;
  ThreadPool pool(threads);
  std::vector<uint8_t> scratch;
  auto run = [&] {
    kernels::MatMul(w.get(), DType::Q8_0, rows, kCols, x.data(), 1, y.data(), &pool, &scratch);
  };
  run();  // warm-up: page in, grow the scratch
  const double budget_ms = std::max(seconds, 0.01) * 1000.0;
  Timer timer;
  int iters = 0;
  do {
    run();
    ++iters;
  } while (timer.ElapsedMs() < budget_ms);
  const double ms = std::max(timer.ElapsedMs(), 1e-3);
  return static_cast<double>(bytes) * iters / (ms * 1e-3) / 1e9;
}

}  // namespace strata::cluster
