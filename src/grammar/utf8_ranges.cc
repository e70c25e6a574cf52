#include "grammar/utf8_ranges.h"

#include <algorithm>

#include "tokenizer/pretokenize.h"

namespace strata::grammar {

namespace {

constexpr uint32_t kMax = 0x10FFFF;
constexpr uint32_t kSurLo = 0xD800, kSurHi = 0xDFFF;

int EncodedLength(uint32_t cp) { return cp < 0x80 ? 1 : cp < 0x800 ? 2 : cp < 0x10000 ? 3 : 4; }

void Encode(uint32_t cp, uint8_t* out) {
  const int n = EncodedLength(cp);
  if (n == 1) {
    out[0] = static_cast<uint8_t>(cp);
    return;
  }
  static const uint8_t lead[5] = {0, 0, 0xC0, 0xE0, 0xF0};
  for (int i = n - 1; i > 0; --i) {
    out[i] = static_cast<uint8_t>(0x80 | (cp & 0x3F));
    cp >>= 6;
  }
  out[0] = static_cast<uint8_t>(lead[n] | cp);
}

// [lo, hi] with both ends of the same encoded length.
void SplitSameLength(uint32_t lo, uint32_t hi, std::vector<Utf8Seq>* out) {
  const int n = EncodedLength(lo);
  for (int i = 1; i < n; ++i) {
    const uint32_t m = (uint32_t{1} << (6 * i)) - 1;  // the low i continuation bytes
    if ((lo & ~m) != (hi & ~m)) {
      if ((lo & m) != 0) {
        SplitSameLength(lo, lo | m, out);
        SplitSameLength((lo | m) + 1, hi, out);
        return;
      }
      if ((hi & m) != m) {
        SplitSameLength(lo, (hi & ~m) - 1, out);
        SplitSameLength(hi & ~m, hi, out);
        return;
      }
    }
  }
  uint8_t a[4], b[4];
  Encode(lo, a);
  Encode(hi, b);
  Utf8Seq s;
  for (int i = 0; i < n; ++i) s.emplace_back(a[i], b[i]);
  out->push_back(std::move(s));
}

}  // namespace

CodeRanges Normalize(const CodeRanges& r) {
  CodeRanges cut;
  for (auto [lo, hi] : r) {
    hi = std::min(hi, kMax);
    if (lo > hi) continue;
    if (lo < kSurLo && hi > kSurHi) {
      cut.push_back({lo, kSurLo - 1});
      cut.push_back({kSurHi + 1, hi});
    } else if (lo >= kSurLo && hi <= kSurHi) {
      continue;
    } else if (lo >= kSurLo && lo <= kSurHi) {
      cut.push_back({kSurHi + 1, hi});
    } else if (hi >= kSurLo && hi <= kSurHi) {
      cut.push_back({lo, kSurLo - 1});
    } else {
      cut.push_back({lo, hi});
    }
  }
  std::sort(cut.begin(), cut.end());
  CodeRanges out;
  for (const auto& x : cut) {
    if (!out.empty() && x.first <= out.back().second + 1) {
      out.back().second = std::max(out.back().second, x.second);
    } else {
      out.push_back(x);
    }
  }
  return out;
}

CodeRanges Complement(const CodeRanges& r) {
  CodeRanges out;
  uint32_t next = 0;
  for (const auto& [lo, hi] : r) {
    if (lo > next) out.push_back({next, lo - 1});
    next = hi + 1;
  }
  if (next <= kMax) out.push_back({next, kMax});
  return Normalize(out);
}

std::vector<Utf8Seq> SplitUtf8(const CodeRanges& r) {
  static const uint32_t kBounds[] = {0x7F, 0x7FF, 0xFFFF, kMax};
  std::vector<Utf8Seq> out;
  for (auto [lo, hi] : r) {
    for (uint32_t bound : kBounds) {
      if (lo > hi) break;
      if (lo > bound) continue;
      const uint32_t end = std::min(hi, bound);
      SplitSameLength(lo, end, &out);
      lo = end + 1;
    }
  }
  return out;
}

size_t DecodeUtf8(std::string_view s, uint32_t* cp) {
  uint32_t v = 0;
  const size_t n = tok::DecodeUtf8At(s, 0, &v);
  if (n == 0) return 0;
  // Strict: the shortest form of a scalar value.
  if (EncodedLength(v) != static_cast<int>(n) || v > kMax || (v >= kSurLo && v <= kSurHi)) return 0;
  *cp = v;
  return n;
}

}  // namespace strata::grammar
