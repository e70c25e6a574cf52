#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "base/fp16.h"
#include "base/mmap.h"
#include "base/progress.h"
#include "base/status.h"
#include "base/thread_pool.h"

namespace strata {
namespace {

TEST(Progress, RendersBarRateAndEta) {
  // 256 MiB of 1 GiB after 2 s: 128 MiB/s, 6 s left.
  const std::string line = strata::Progress::Render("pull x", 256u << 20, 1u << 30,
                                                    strata::Progress::Unit::kBytes, 2.0, 8);
  EXPECT_EQ(line, "pull x  [##......]  25%  256.0 MiB/1.0 GiB  128.0 MiB/s  ETA 0:06");
  const std::string done =
      strata::Progress::Render("q", 10, 10, strata::Progress::Unit::kItems, 1.0, 4);
  EXPECT_EQ(done, "q  [####] 100%  10/10  10/s  ETA 0:00");
  EXPECT_EQ(strata::Progress::Render("u", 1536, 0, strata::Progress::Unit::kBytes, 1.0, 4),
            "u  1.5 KiB  1.5 KiB/s");
}

// What a Progress("work", 100 items) writes to a non-terminal while `work` runs on it.
std::string ProgressOutput(const std::function<void(strata::Progress&)>& work) {
  char* buf = nullptr;
  size_t size = 0;
  FILE* out = open_memstream(&buf, &size);
  {
    strata::Progress p("work", 100, strata::Progress::Unit::kItems, out);
    work(p);
  }
  std::fflush(out);
  std::string text(buf, size);
  std::fclose(out);
  std::free(buf);
  return text;
}

TEST(Progress, PlainLinesWhenNotATerminal) {
  // Quicker than the quiet period: nothing drawn.
  EXPECT_EQ(ProgressOutput([](strata::Progress& p) { p.Add(100); }), "");
}

TEST(Progress, PlainLineCarriesRateAndEta) {
  // 300 of 1000 items in 3 s, 100 already done before (a resumed job): 66/s, 11 s left.
  EXPECT_EQ(strata::Progress::RenderPlain("pull", 300, 1000, strata::Progress::Unit::kItems, 3.0,
                                          100, false),
            "pull: 30% (300 of 1000, 66/s, ETA 0:11)");
  EXPECT_EQ(
      strata::Progress::RenderPlain("q", 1536, 0, strata::Progress::Unit::kBytes, 1.0, 0, true),
      "q: 1.5 KiB (1.5 KiB/s), done");
}

TEST(Progress, PlainLineAtEachTenPercentAfterTheQuietPeriod) {
  const std::string text = ProgressOutput([](strata::Progress& p) {
    std::this_thread::sleep_for(std::chrono::milliseconds(350));
    p.Add(10);  // 10%: the first line
    p.Add(5);   // same step, within 5 s: nothing
    p.Add(5);   // 20%: a line
    p.Add(80);  // 100%: a line; then Finish() adds ", done"
  });
  std::vector<std::string> lines;
  for (size_t b = 0, e; (e = text.find('\n', b)) != std::string::npos; b = e + 1)
    lines.push_back(text.substr(b, e - b));
  ASSERT_EQ(lines.size(), 4u) << text;
  EXPECT_EQ(lines[0].rfind("work: 10% (10 of 100, ", 0), 0u) << lines[0];
  EXPECT_EQ(lines[1].rfind("work: 20% (20 of 100, ", 0), 0u) << lines[1];
  EXPECT_EQ(lines[2].rfind("work: 100% (100 of 100, ", 0), 0u) << lines[2];
  EXPECT_EQ(lines[3].rfind("work: 100% (100 of 100, ", 0), 0u) << lines[3];
  EXPECT_NE(lines[3].find("ETA 0:00), done"), std::string::npos) << lines[3];
  for (const std::string& l : lines) EXPECT_NE(l.find("/s, ETA "), std::string::npos) << l;
}

TEST(Fp16, RoundTripsEveryHalf) {
  for (uint32_t h = 0; h < 65536; ++h) {
    const float f = fp16_to_f32(static_cast<uint16_t>(h));
    if (std::isnan(f)) continue;
    EXPECT_EQ(f32_to_fp16(f), h) << h;
  }
}

TEST(Fp16, RoundsToNearestEven) {
  EXPECT_EQ(fp16_to_f32(f32_to_fp16(1.0f + 1.0f / 2048)), 1.0f);                // tie -> even
  EXPECT_EQ(fp16_to_f32(f32_to_fp16(1.0f + 3.0f / 2048)), 1.0f + 2.0f / 1024);  // tie -> even
  EXPECT_EQ(f32_to_fp16(65520.0f), 0x7c00);                                     // overflow -> inf
  EXPECT_EQ(fp16_to_f32(f32_to_fp16(5.9604645e-08f)), 5.9604645e-08f);  // smallest subnormal
}

TEST(Bf16, RoundsToNearestEven) {
  EXPECT_EQ(f32_to_bf16(1.0f), 0x3f80);
  EXPECT_EQ(bf16_to_f32(f32_to_bf16(1.00390625f)), 1.0f);  // tie -> even
  EXPECT_EQ(bf16_to_f32(f32_to_bf16(1.01171875f)), 1.015625f);
  EXPECT_TRUE(std::isnan(bf16_to_f32(f32_to_bf16(std::nanf("")))));
}

TEST(Status, ResultCarriesValueOrError) {
  Result<int> ok = 3;
  EXPECT_TRUE(ok.ok());
  EXPECT_EQ(ok.value(), 3);
  Result<int> bad = Status::Error("boom");
  EXPECT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().With("ctx").message(), "ctx: boom");
}

TEST(HugePages, RegionStartsOnAHugePageAndIsZeroedAndWritable) {
  const uint64_t n = 3 * kHugePageBytes + 123;  // not a multiple of the huge page
  Result<std::shared_ptr<uint8_t>> r = AllocateHugePages(n);
  ASSERT_TRUE(r.ok()) << r.status().message();
  uint8_t* p = r->get();
  EXPECT_EQ(reinterpret_cast<uintptr_t>(p) % kHugePageBytes, 0u);
  for (uint64_t i = 0; i < n; i += 4096) EXPECT_EQ(p[i], 0) << i;
  EXPECT_EQ(p[n - 1], 0);
  p[0] = 1;  // the first and the last byte asked for are writable
  p[n - 1] = 2;
  EXPECT_EQ(p[0] + p[n - 1], 3);
}

TEST(HugePages, ImpossibleSizeIsAnError) {
  Result<std::shared_ptr<uint8_t>> r = AllocateHugePages(uint64_t{1} << 62);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("cannot allocate"), std::string::npos);
}

TEST(ThreadPool, ParallelForCoversRangeOnce) {
  for (int threads : {1, 2, 3, 5}) {
    ThreadPool pool(threads);
    for (int64_t n : {0, 1, 2, 7, 100, 1001}) {
      std::vector<std::atomic<int>> hits(static_cast<size_t>(n));
      for (int rep = 0; rep < 20; ++rep)
        pool.ParallelFor(n, [&](int64_t b, int64_t e) {
          for (int64_t i = b; i < e; ++i) hits[static_cast<size_t>(i)]++;
        });
      for (int64_t i = 0; i < n; ++i) EXPECT_EQ(hits[static_cast<size_t>(i)].load(), 20);
    }
  }
}

}  // namespace
}  // namespace strata
