// GBNF grammars (llama.cpp's format) parsed and compiled into a byte-level grammar.
//
// Syntax: `name ::= alternatives` rules (one per line; a newline inside parentheses or before
// a leading `|` continues the rule), `|` alternation, sequences, `( )` groups, postfix `*`
// `+` `?` `{m}` `{m,}` `{m,n}`, string literals "..." and character classes [a-z] / [^...]
// with escapes (\n \r \t \\ \" \[ \] \- \xHH \uHHHH \UHHHHHHHH), `.` (any character), and
// `#` comments. The rule named "root" is the start rule.
//
// Compiled form: every character class is lowered to UTF-8 byte ranges, so matching runs
// over bytes (a token's bytes, partial characters included) while staying exact over code
// points. Repetitions become helper rules. Left recursion is refused.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"

namespace strata::grammar {

// A set of bytes.
struct ByteSet {
  std::array<uint64_t, 4> bits{};
  bool Has(uint8_t b) const { return (bits[b >> 6] >> (b & 63)) & 1; }
  void Add(uint8_t b) { bits[b >> 6] |= uint64_t{1} << (b & 63); }
  void AddRange(uint8_t lo, uint8_t hi) {
    for (int b = lo; b <= hi; ++b) Add(static_cast<uint8_t>(b));
  }
  bool operator==(const ByteSet& o) const { return bits == o.bits; }
};

struct Elem {
  enum Kind : uint8_t { kBytes, kRef, kEnd };
  Kind kind = kEnd;
  int32_t arg = 0;  // kBytes: index into Grammar::sets; kRef: rule index
};

struct Grammar {
  std::vector<ByteSet> sets;
  // Every alternative of every rule, each ending with a kEnd element.
  std::vector<Elem> elems;
  std::vector<std::vector<int32_t>> alts;  // per rule: start offsets into elems
  std::vector<std::string> names;          // per rule (helpers get generated names)
  int32_t root = 0;
};

// Parses GBNF text and compiles it. Errors name the line and column ("line 3, column 7: ...").
// `root`: the start rule's name.
Result<Grammar> ParseGbnf(std::string_view text, std::string_view root = "root");

// A GBNF string literal for `s` (quoted, escaped): for building grammars programmatically.
std::string GbnfLiteral(std::string_view s);

}  // namespace strata::grammar
