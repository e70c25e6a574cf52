// Kernel tests, part 3: the low-bit and prepared-activation GEMM tiles of every path
// against the scalar twin, entry by entry.
// Tolerances and the helpers: kernels_test_util.h.
#include "kernels/kernels.h"

#include <gtest/gtest.h>

#include <cfloat>
#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "base/fp16.h"
#include "kernels/kernels_impl.h"
#include "kernels/kernels_test_util.h"
#include "tensor/quant.h"

namespace strata::kernels {
namespace {

using namespace test_util;  // NOLINT(google-build-using-namespace)

// Random bytes over the quantized levels and scales of each block of a 4/5/6-bit row (its
// fp16 scales kept), so that every level / scale combination occurs, extremes included.
void ScrambleLevels(std::mt19937& rng, DType t, int64_t n, uint8_t* row) {
  std::uniform_int_distribution<int> byte(0, 255);
  const size_t bs = RowBytesUnchecked(t, kQK_K);
  for (int64_t blk = 0; blk < n / kQK_K; ++blk) {
    uint8_t* b = row + blk * bs;
    // Q4_K / Q5_K: fp16 d, dmin first; Q6_K: fp16 d last.
    const size_t begin = t == DType::Q6_K ? 0 : 4, end = t == DType::Q6_K ? bs - 2 : bs;
    for (size_t k = begin; k < end; ++k) b[k] = static_cast<uint8_t>(byte(rng));
  }
}

constexpr int kTileRows = internal::kMaxDotRows, kTileCols = internal::kMaxDotCols;
constexpr size_t kTileYs = kTileRows + 3;  // y stride (floats) wider than the tile

// A tile call's output y (kTileCols columns of stride kTileYs, all -7 before the call)
// against the entries want[c][r]: the nw x nx tile bit for bit, everything else untouched.
::testing::AssertionResult TileMatches(const std::vector<float>& y, int nw, int nx,
                                       const float (&want)[kTileCols][kTileRows]) {
  for (int c = 0; c < kTileCols; ++c)
    for (size_t r = 0; r < kTileYs; ++r) {
      const float got = y[c * kTileYs + r];
      if (c < nx && static_cast<int>(r) < nw) {
        if (f32_to_bits(got) != f32_to_bits(want[c][r]))
          return ::testing::AssertionFailure()
                 << "entry (" << r << ", " << c << "): " << got << ", want " << want[c][r];
      } else if (got != -7.0f) {
        return ::testing::AssertionFailure()
               << "wrote outside the tile: (" << r << ", " << c << ")";
      }
    }
  return ::testing::AssertionSuccess();
}

// Every tile function of the low-bit types (vec_dot_tile, repack_tile) against the scalar
// twin's order entry by entry, bit for bit, over sizes, all nw x nx shapes, strides with
// padding and misaligned rows. Entries outside the nw x nx tile must stay untouched.
TEST_P(PathTest, LowbitTilesMatchScalarPerEntry) {
  std::mt19937 rng(15);
  const internal::IsaKernels& isa = TableOf(GetParam());
  const internal::IsaKernels& ref_isa = internal::ScalarKernels();
  for (DType t : {DType::Q4_0, DType::Q4_K, DType::Q5_K, DType::Q6_K}) {
    const internal::TypeKernels* tk = internal::FindType(isa, t);
    const internal::TypeKernels* rk = internal::FindType(ref_isa, t);
    ASSERT_NE(tk, nullptr);
    ASSERT_NE(rk, nullptr);
    struct Slot {
      const char* name;
      internal::VecDotTileFn fn, want;
    };
    // repack_gemv_tile: entries of the scalar twin's repack_vec_dot.
    const internal::VecDotTileFn gemv_want =
        t == DType::Q4_K   ? internal::PerEntryTile<internal::DotQ4_KRepackGemv>
        : t == DType::Q4_0 ? internal::PerEntryTile<internal::DotQ4_0Repack>
                           : nullptr;
    const Slot slots[] = {{"vec_dot_tile", tk->vec_dot_tile, rk->vec_dot_tile},
                          {"repack_tile", tk->repack_tile, rk->repack_tile},
                          {"repack_gemv_tile", tk->repack_gemv_tile, gemv_want}};
    std::vector<int64_t> sizes = SizesFor(t);
    if (BlockOf(t) != 256) sizes = {32, 64, 96, 256, 1536};
    for (int64_t n : sizes) {
      const size_t w_row = RowBytesUnchecked(t, n), x_row = ActBytes(t, n);
      const size_t ws = w_row + 2 * (n % 3), xs = x_row + 4 * (n % 2);  // padded strides
      Buffer w(ws * kTileRows, 2), x(xs * kTileCols, t == DType::Q4_0 ? 2 : 4);
      for (int r = 0; r < kTileRows; ++r) {
        MakeWeightRow(rng, t, n, w.data() + r * ws);
        if (BlockOf(t) == 256 && (n / 256 + r) % 2 == 0)
          ScrambleLevels(rng, t, n, w.data() + r * ws);
      }
      for (int c = 0; c < kTileCols; ++c) {
        const std::vector<float> xf = RandomFloats(rng, n, -2.0f, 2.0f);
        ref::QuantizeActivationRow(t, xf.data(), x.data() + c * xs, n);
      }
      // The single-row function of the repacked GEMV order too.
      if (tk->repack_vec_dot != nullptr) {
        ASSERT_NE(rk->repack_vec_dot, nullptr);
        for (int c = 0; c < kTileCols; ++c)
          for (int r = 0; r < kTileRows; ++r)
            ASSERT_EQ(f32_to_bits(tk->repack_vec_dot(n, w.data() + r * ws, x.data() + c * xs)),
                      f32_to_bits(rk->repack_vec_dot(n, w.data() + r * ws, x.data() + c * xs)))
                << DTypeName(t) << " repack_vec_dot n=" << n << " row " << r << " token " << c;
      }
      for (const Slot& sl : slots) {
        if (sl.fn == nullptr) continue;
        ASSERT_NE(sl.want, nullptr);
        float want[kTileCols][kTileRows];
        for (int c = 0; c < kTileCols; ++c)
          for (int r = 0; r < kTileRows; ++r)
            sl.want(n, w.data() + r * ws, ws, 1, x.data() + c * xs, xs, 1, &want[c][r], 1);
        for (int nw = 1; nw <= kTileRows; ++nw)
          for (int nx = 1; nx <= kTileCols; ++nx) {
            std::vector<float> y(kTileCols * kTileYs, -7.0f);
            sl.fn(n, w.data(), ws, nw, x.data(), xs, nx, y.data(), kTileYs);
            ASSERT_TRUE(TileMatches(y, nw, nx, want))
                << DTypeName(t) << " " << sl.name << " n=" << n << " nw=" << nw << " nx=" << nx;
          }
      }
    }
  }
}

// The prepared-activation GEMM tiles (TypeKernels::prepared_tile, where a table has them)
// against the scalar twin's vec_dot_tile entry by entry, bit for bit: every nw x nx shape,
// groups prepared from 1..4 tokens, padded strides, misaligned weight rows, and Q8_0 blocks
// with the extreme bytes -128 / 127 on both sides. Entries outside the tile stay untouched.
TEST_P(PathTest, PreparedTilesMatchScalarPerEntry) {
  std::mt19937 rng(21);
  std::uniform_int_distribution<int> byte(-128, 127);
  const internal::IsaKernels& isa = TableOf(GetParam());
  int checked = 0;
  for (int i = 0; i < isa.n_types; ++i) {
    const internal::TypeKernels& tk = isa.types[i];
    const bool any =
        tk.prepare_tile_x != nullptr || tk.tile_x_bytes != nullptr || tk.prepared_tile != nullptr;
    if (!any) continue;
    ASSERT_TRUE(tk.prepare_tile_x != nullptr && tk.tile_x_bytes != nullptr &&
                tk.prepared_tile != nullptr)
        << DTypeName(tk.weight_type);
    const DType t = tk.weight_type;
    ASSERT_TRUE(t == DType::Q8_0 || t == DType::Q4_K || t == DType::Q4_0)
        << "extend this test for " << DTypeName(t);
    const internal::TypeKernels* rk = internal::FindType(internal::ScalarKernels(), t);
    // The tile of the order the prepared tile stands for: llama.cpp's repacked GEMM where the
    // type has one (Q4_K, Q4_0), else the GEMM order of vec_dot_tile.
    const internal::VecDotTileFn want_tile =
        tk.repack_tile != nullptr ? rk->repack_tile : rk->vec_dot_tile;
    const std::vector<int64_t> sizes = t != DType::Q4_K
                                           ? std::vector<int64_t>{32, 64, 96, 320, 1536, 4096 + 32}
                                           : std::vector<int64_t>{256, 512, 1536, 4096 + 256};
    for (int64_t n : sizes) {
      const size_t row = RowBytesUnchecked(t, n), xrow = ActBytes(t, n);
      const size_t ws = row + 2 * (n % 3 + 1), xs = xrow + 4 * (n % 2);
      Buffer w(ws * kTileRows, 2), x(xs * kTileCols, 4);
      for (int r = 0; r < kTileRows; ++r) {
        MakeWeightRow(rng, t, n, w.data() + r * ws);
        if (t == DType::Q4_K) {
          if (r % 2 == 0) ScrambleLevels(rng, t, n, w.data() + r * ws);
          continue;
        }
        if (t == DType::Q4_0) continue;         // every nibble is a legal level
        for (int64_t b = 0; b < n / 32; ++b) {  // extreme weights are legal in files
          BlockQ8_0* wb = reinterpret_cast<BlockQ8_0*>(w.data() + r * ws) + b;
          wb->qs[(b + r) % 32] = (b % 2 == 0) ? -128 : 127;
        }
      }
      for (int c = 0; c < kTileCols; ++c) {
        if (t == DType::Q4_K) {  // Q8_K rows of random values (quants up to +-127)
          const std::vector<float> xf = RandomFloats(rng, n, -2.0f, 2.0f);
          ref::QuantizeActivationRow(t, xf.data(), x.data() + c * xs, n);
          continue;
        }
        for (int64_t b = 0; b < n / 32; ++b) {  // raw blocks: any byte, scales of either sign
          BlockQ8_0* xb = reinterpret_cast<BlockQ8_0*>(x.data() + c * xs) + b;
          for (int8_t& q : xb->qs) q = static_cast<int8_t>(byte(rng));
          const uint16_t d = f32_to_fp16((byte(rng) + 0.5f) / 1000.0f);
          std::memcpy(&xb->d, &d, 2);
        }
      }
      float want[kTileCols][kTileRows];
      for (int c = 0; c < kTileCols; ++c)
        for (int r = 0; r < kTileRows; ++r)
          want_tile(n, w.data() + r * ws, ws, 1, x.data() + c * xs, xs, 1, &want[c][r], 1);
      const size_t gbytes = tk.tile_x_bytes(n);
      ++checked;
      for (int prepared = 1; prepared <= kTileCols; ++prepared) {
        Buffer g(gbytes, 0);  // MatMul hands 64-byte aligned groups
        tk.prepare_tile_x(x.data(), xs, prepared, g.data(), n);
        for (int nw = 1; nw <= kTileRows; ++nw)
          for (int nx = 1; nx <= prepared; ++nx) {
            std::vector<float> y(kTileCols * kTileYs, -7.0f);
            tk.prepared_tile(n, w.data(), ws, nw, g.data(), gbytes, nx, y.data(), kTileYs);
            ASSERT_TRUE(TileMatches(y, nw, nx, want))
                << DTypeName(t) << " n=" << n << " prepared=" << prepared << " nw=" << nw
                << " nx=" << nx;
          }
      }
    }
  }
  // The AVX-512 table prepares Q8_0, Q4_K and Q4_0 activations.
  if (GetParam() == "avx512") {
    EXPECT_EQ(checked, 16);
  }
}

}  // namespace
}  // namespace strata::kernels
