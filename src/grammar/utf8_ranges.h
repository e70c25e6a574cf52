// Code point ranges and their UTF-8 byte-range sequences (for lowering character classes).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>
#include <utility>
#include <vector>

namespace strata::grammar {

using CodeRanges = std::vector<std::pair<uint32_t, uint32_t>>;  // inclusive [lo, hi]
// One encoded form: a range of bytes per position.
using Utf8Seq = std::vector<std::pair<uint8_t, uint8_t>>;

// Sorted, overlaps and neighbours merged, surrogates (U+D800..U+DFFF) removed.
CodeRanges Normalize(const CodeRanges& r);
// Every scalar value (U+0000..U+10FFFF, surrogates excluded) not in normalized `r`.
CodeRanges Complement(const CodeRanges& r);
// Byte-range sequences whose union is exactly the UTF-8 encodings of `r` (normalized).
std::vector<Utf8Seq> SplitUtf8(const CodeRanges& r);
// Decodes one character at the start of s: its length (0 if invalid) and *cp.
size_t DecodeUtf8(std::string_view s, uint32_t* cp);

}  // namespace strata::grammar
