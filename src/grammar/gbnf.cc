#include "grammar/gbnf.h"

#include <algorithm>
#include <functional>
#include <map>
#include <unordered_map>
#include <utility>

#include "grammar/utf8_ranges.h"

namespace strata::grammar {

namespace {

constexpr int kMaxRepeat = 10000;

// A symbol of a sequence before lowering: a character class or a rule reference.
struct Sym {
  bool is_class = false;
  CodeRanges ranges;  // normalized (sorted, merged, not negated)
  int32_t rule = -1;
};
using Seq = std::vector<Sym>;
struct RawRule {
  std::string name;
  std::vector<Seq> alts;
  bool defined = false;
  size_t first_use = std::string::npos;
};

class Parser {
 public:
  Parser(std::string_view text, std::string_view root) : t_(text), root_(root) {}

  Status Run() {
    SkipSpace(true);
    while (pos_ < t_.size()) {
      const size_t start = pos_;
      std::string name = Name();
      if (name.empty()) return Fail("expected a rule name");
      SkipSpace(false);
      if (t_.substr(pos_, 3) != "::=") return Fail("expected '::=' after the rule name");
      pos_ += 3;
      SkipSpace(true);
      const int32_t id = RuleId(name, start);
      if (rules_[static_cast<size_t>(id)].defined)
        return FailAt(start, "rule '" + name + "' is defined twice");
      std::vector<Seq> alts;
      STRATA_RETURN_IF_ERROR(Alternates(false, &alts));
      rules_[static_cast<size_t>(id)].alts = std::move(alts);
      rules_[static_cast<size_t>(id)].defined = true;
      SkipSpace(true);
    }
    for (const RawRule& r : rules_)
      if (!r.defined) return FailAt(r.first_use, "undefined rule '" + r.name + "'");
    if (ids_.find(root_) == ids_.end())
      return Errorf("the grammar has no rule named '%s'", std::string(root_).c_str());
    return Status::Ok();
  }
  std::vector<RawRule>& rules() { return rules_; }
  int32_t root() const { return ids_.find(root_)->second; }

 private:
  std::string_view t_;
  std::string_view root_;
  size_t pos_ = 0;
  std::vector<RawRule> rules_;
  std::map<std::string, int32_t, std::less<>> ids_;
  int helpers_ = 0;

  Status FailAt(size_t at, const std::string& msg) const {
    int line = 1, col = 1;
    for (size_t i = 0; i < at && i < t_.size(); ++i) {
      if (t_[i] == '\n') {
        ++line;
        col = 1;
      } else {
        ++col;
      }
    }
    return Errorf("grammar: line %d, column %d: %s", line, col, msg.c_str());
  }
  Status Fail(const std::string& msg) const { return FailAt(pos_, msg); }
  bool Eof() const { return pos_ >= t_.size(); }
  char Peek() const { return Eof() ? '\0' : t_[pos_]; }

  static bool NameChar(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '_' || c == '.';
  }
  std::string Name() {
    const size_t s = pos_;
    while (!Eof() && NameChar(t_[pos_]) && !(t_[pos_] == '.' && pos_ == s)) ++pos_;
    return std::string(t_.substr(s, pos_ - s));
  }
  void SkipSpace(bool newlines) {
    while (!Eof()) {
      const char c = t_[pos_];
      if (c == ' ' || c == '\t' || c == '\r' || (newlines && c == '\n')) {
        ++pos_;
      } else if (c == '#') {
        while (!Eof() && t_[pos_] != '\n') ++pos_;
      } else {
        break;
      }
    }
  }
  int32_t RuleId(const std::string& name, size_t at) {
    auto it = ids_.find(name);
    if (it != ids_.end()) return it->second;
    const int32_t id = static_cast<int32_t>(rules_.size());
    rules_.push_back(RawRule{name, {}, false, at});
    ids_.emplace(name, id);
    return id;
  }
  int32_t Helper(const std::string& base, std::vector<Seq> alts) {
    const int32_t id = static_cast<int32_t>(rules_.size());
    rules_.push_back(RawRule{base + "_" + std::to_string(helpers_++), std::move(alts), true, 0});
    return id;
  }
  static Sym Ref(int32_t rule) {
    Sym s;
    s.rule = rule;
    return s;
  }

  Status Alternates(bool nested, std::vector<Seq>* alts) {
    Seq seq;
    STRATA_RETURN_IF_ERROR(Sequence(nested, &seq));
    alts->push_back(std::move(seq));
    for (;;) {
      const size_t save = pos_;
      SkipSpace(true);
      if (Peek() != '|') {
        pos_ = save;
        return Status::Ok();
      }
      ++pos_;
      SkipSpace(true);
      Seq next;
      STRATA_RETURN_IF_ERROR(Sequence(nested, &next));
      alts->push_back(std::move(next));
    }
  }

  // One code point of a literal or class: an escape or a UTF-8 character.
  Status Char(uint32_t* cp) {
    if (Eof()) return Fail("unexpected end of the grammar");
    const unsigned char c = static_cast<unsigned char>(t_[pos_]);
    if (c == '\\') {
      ++pos_;
      if (Eof()) return Fail("unexpected end after '\\'");
      const char e = t_[pos_++];
      int hex = 0;
      switch (e) {
        case 'n': *cp = '\n'; return Status::Ok();
        case 'r': *cp = '\r'; return Status::Ok();
        case 't': *cp = '\t'; return Status::Ok();
        case '\\':
        case '"':
        case '[':
        case ']':
        case '-':
        case '/':
        case '\'':
        case '^': *cp = static_cast<unsigned char>(e); return Status::Ok();
        case 'x': hex = 2; break;
        case 'u': hex = 4; break;
        case 'U': hex = 8; break;
        default: --pos_; return Fail(std::string("unknown escape '\\") + e + "'");
      }
      uint32_t v = 0;
      for (int i = 0; i < hex; ++i) {
        const char h = Peek();
        int d = h >= '0' && h <= '9'   ? h - '0'
                : h >= 'a' && h <= 'f' ? h - 'a' + 10
                : h >= 'A' && h <= 'F' ? h - 'A' + 10
                                       : -1;
        if (d < 0) return Fail("expected a hexadecimal digit");
        v = v * 16 + static_cast<uint32_t>(d);
        ++pos_;
      }
      if (v > 0x10FFFF) return Fail("code point out of range");
      *cp = v;
      return Status::Ok();
    }
    const size_t n = DecodeUtf8(t_.substr(pos_), cp);
    if (n == 0) return Fail("invalid UTF-8 in the grammar");
    pos_ += n;
    return Status::Ok();
  }

  Status Literal(Seq* seq) {
    ++pos_;  // "
    while (Peek() != '"') {
      if (Eof() || Peek() == '\n') return Fail("unterminated string literal");
      uint32_t cp = 0;
      STRATA_RETURN_IF_ERROR(Char(&cp));
      Sym s;
      s.is_class = true;
      s.ranges = {{cp, cp}};
      seq->push_back(std::move(s));
    }
    ++pos_;
    return Status::Ok();
  }

  Status Class(Seq* seq) {
    ++pos_;  // [
    bool negated = false;
    if (Peek() == '^') {
      negated = true;
      ++pos_;
    }
    CodeRanges r;
    while (Peek() != ']') {
      if (Eof()) return Fail("unterminated character class");
      uint32_t lo = 0, hi = 0;
      STRATA_RETURN_IF_ERROR(Char(&lo));
      hi = lo;
      if (Peek() == '-' && pos_ + 1 < t_.size() && t_[pos_ + 1] != ']') {
        ++pos_;
        STRATA_RETURN_IF_ERROR(Char(&hi));
        if (hi < lo) return Fail("character range is reversed");
      }
      r.push_back({lo, hi});
    }
    ++pos_;
    Sym s;
    s.is_class = true;
    s.ranges = negated ? Complement(Normalize(r)) : Normalize(r);
    if (s.ranges.empty()) return Fail("the character class matches nothing");
    seq->push_back(std::move(s));
    return Status::Ok();
  }

  // Applies a postfix operator to seq[from..].
  Status Repeat(Seq* seq, size_t from, const std::string& rule_base) {
    if (from >= seq->size()) return Fail("nothing to repeat");
    Sym x;
    if (seq->size() - from == 1) {
      x = (*seq)[from];
    } else {
      x = Ref(Helper(rule_base, {Seq(seq->begin() + static_cast<long>(from), seq->end())}));
    }
    seq->resize(from);
    int lo = 0, hi = -1;  // hi -1: unbounded
    const char op = t_[pos_++];
    if (op == '*') {
      lo = 0;
    } else if (op == '+') {
      lo = 1;
    } else if (op == '?') {
      hi = 1;
    } else {  // {m}, {m,}, {m,n}
      auto number = [&](int* out) {
        SkipSpace(true);
        if (!(Peek() >= '0' && Peek() <= '9')) return false;
        long v = 0;
        while (Peek() >= '0' && Peek() <= '9' && v <= kMaxRepeat) v = v * 10 + (t_[pos_++] - '0');
        *out = static_cast<int>(std::min<long>(v, kMaxRepeat + 1));
        SkipSpace(true);
        return true;
      };
      if (!number(&lo)) return Fail("expected a number in '{m,n}'");
      hi = lo;
      if (Peek() == ',') {
        ++pos_;
        hi = -1;
        number(&hi);
      }
      if (Peek() != '}') return Fail("expected '}'");
      ++pos_;
      if (lo > kMaxRepeat || hi > kMaxRepeat) return Fail("repetition count too large");
      if (hi >= 0 && hi < lo) return Fail("repetition {m,n} with n < m");
    }
    for (int i = 0; i < lo; ++i) seq->push_back(x);
    if (hi < 0) {  // R ::= x R | ""
      const int32_t r = Helper(rule_base, {});
      rules_[static_cast<size_t>(r)].alts = {{x, Ref(r)}, {}};
      seq->push_back(Ref(r));
    } else if (hi > lo) {  // O_k ::= x O_{k-1} | "" ; O_1 ::= x | ""
      int32_t prev = Helper(rule_base, {{x}, {}});
      for (int k = 2; k <= hi - lo; ++k) prev = Helper(rule_base, {{x, Ref(prev)}, {}});
      seq->push_back(Ref(prev));
    }
    return Status::Ok();
  }

  Status Sequence(bool nested, Seq* seq) {
    size_t last = std::string::npos;  // start of the last item (for postfix operators)
    const std::string base = "rule";
    for (;;) {
      SkipSpace(nested);
      if (Eof()) return Status::Ok();
      const char c = t_[pos_];
      if (c == '|' || c == ')' || c == '\n') return Status::Ok();
      const size_t item = seq->size();
      if (c == '"') {
        STRATA_RETURN_IF_ERROR(Literal(seq));
      } else if (c == '[') {
        STRATA_RETURN_IF_ERROR(Class(seq));
      } else if (c == '.') {
        ++pos_;
        Sym s;
        s.is_class = true;
        s.ranges = Complement({});
        seq->push_back(std::move(s));
      } else if (c == '(') {
        ++pos_;
        SkipSpace(true);
        std::vector<Seq> alts;
        STRATA_RETURN_IF_ERROR(Alternates(true, &alts));
        SkipSpace(true);
        if (Peek() != ')') return Fail("expected ')'");
        ++pos_;
        seq->push_back(Ref(Helper(base, std::move(alts))));
      } else if (c == '*' || c == '+' || c == '?' || c == '{') {
        if (last == std::string::npos) return Fail(std::string("nothing before '") + c + "'");
        STRATA_RETURN_IF_ERROR(Repeat(seq, last, base));
        last = std::string::npos;
        continue;
      } else if (NameChar(c)) {
        const size_t at = pos_;
        std::string name = Name();
        if (name.empty()) return Fail("unexpected character '.'");
        SkipSpace(nested);
        if (t_.substr(pos_, 3) == "::=")
          return FailAt(at, "missing newline before the rule '" + name + "'");
        pos_ = at + name.size();
        seq->push_back(Ref(RuleId(name, at)));
      } else {
        return Fail(std::string("unexpected character '") + c + "'");
      }
      last = item;
    }
  }
};

// Lowers the parsed rules into byte-level elements.
class Lowering {
 public:
  explicit Lowering(std::vector<RawRule>& rules) : rules_(rules) {}

  Grammar Run(int32_t root) {
    g_.root = root;
    // Class rules may be appended while lowering: index, not iterate.
    const size_t n = rules_.size();
    g_.alts.resize(n);
    g_.names.resize(n);
    for (size_t r = 0; r < n; ++r) g_.names[r] = rules_[r].name;
    for (size_t r = 0; r < n; ++r)
      for (const Seq& seq : rules_[r].alts) {
        const int32_t start = Emit(seq);  // may add rules: g_.alts grows
        g_.alts[r].push_back(start);
      }
    return std::move(g_);
  }

 private:
  std::vector<RawRule>& rules_;
  Grammar g_;
  std::map<CodeRanges, Elem> class_elems_;
  std::map<std::pair<uint8_t, uint8_t>, int32_t> set_of_range_;

  int32_t AddSet(const ByteSet& s) {
    for (size_t i = 0; i < g_.sets.size(); ++i)
      if (g_.sets[i] == s) return static_cast<int32_t>(i);
    g_.sets.push_back(s);
    return static_cast<int32_t>(g_.sets.size() - 1);
  }
  int32_t RangeSet(uint8_t lo, uint8_t hi) {
    auto it = set_of_range_.find({lo, hi});
    if (it != set_of_range_.end()) return it->second;
    ByteSet s;
    s.AddRange(lo, hi);
    const int32_t id = AddSet(s);
    set_of_range_.emplace(std::make_pair(lo, hi), id);
    return id;
  }
  // The element matching one character of `ranges`.
  Elem ClassElem(const CodeRanges& ranges) {
    auto it = class_elems_.find(ranges);
    if (it != class_elems_.end()) return it->second;
    std::vector<Utf8Seq> seqs = SplitUtf8(ranges);
    ByteSet single;
    bool any_single = false;
    std::vector<const Utf8Seq*> multi;
    for (const Utf8Seq& s : seqs) {
      if (s.size() == 1) {
        single.AddRange(s[0].first, s[0].second);
        any_single = true;
      } else {
        multi.push_back(&s);
      }
    }
    Elem e;
    if (multi.empty()) {
      e.kind = Elem::kBytes;
      e.arg = AddSet(single);
    } else {
      const int32_t r = static_cast<int32_t>(g_.alts.size());
      g_.alts.emplace_back();
      g_.names.push_back("char_" + std::to_string(r));
      if (any_single) {
        g_.alts[static_cast<size_t>(r)].push_back(static_cast<int32_t>(g_.elems.size()));
        g_.elems.push_back({Elem::kBytes, AddSet(single)});
        g_.elems.push_back({Elem::kEnd, 0});
      }
      for (const Utf8Seq* s : multi) {
        g_.alts[static_cast<size_t>(r)].push_back(static_cast<int32_t>(g_.elems.size()));
        for (const auto& [lo, hi] : *s) g_.elems.push_back({Elem::kBytes, RangeSet(lo, hi)});
        g_.elems.push_back({Elem::kEnd, 0});
      }
      e.kind = Elem::kRef;
      e.arg = r;
    }
    class_elems_.emplace(ranges, e);
    return e;
  }
  int32_t Emit(const Seq& seq) {
    // Class elements may create rules (and their elements) first: collect, then append.
    std::vector<Elem> out;
    for (const Sym& s : seq)
      out.push_back(s.is_class ? ClassElem(s.ranges) : Elem{Elem::kRef, s.rule});
    const int32_t start = static_cast<int32_t>(g_.elems.size());
    g_.elems.insert(g_.elems.end(), out.begin(), out.end());
    g_.elems.push_back({Elem::kEnd, 0});
    return start;
  }
};

// Refuses left recursion (a rule that can reach itself without consuming a byte), which
// would make the matcher's expansion endless.
Status CheckLeftRecursion(const Grammar& g) {
  const size_t n = g.alts.size();
  std::vector<bool> nullable(n, false);
  for (bool changed = true; changed;) {
    changed = false;
    for (size_t r = 0; r < n; ++r) {
      if (nullable[r]) continue;
      for (int32_t a : g.alts[r]) {
        bool all = true;
        for (size_t i = static_cast<size_t>(a); g.elems[i].kind != Elem::kEnd; ++i)
          if (g.elems[i].kind == Elem::kBytes || !nullable[static_cast<size_t>(g.elems[i].arg)]) {
            all = false;
            break;
          }
        if (all) {
          nullable[r] = true;
          changed = true;
          break;
        }
      }
    }
  }
  std::vector<std::vector<int32_t>> corner(n);
  for (size_t r = 0; r < n; ++r)
    for (int32_t a : g.alts[r])
      for (size_t i = static_cast<size_t>(a); g.elems[i].kind == Elem::kRef; ++i) {
        corner[r].push_back(g.elems[i].arg);
        if (!nullable[static_cast<size_t>(g.elems[i].arg)]) break;
      }
  std::vector<int> color(n, 0);  // 0 new, 1 on the path, 2 done
  std::string bad;
  std::function<bool(size_t)> dfs = [&](size_t r) {
    color[r] = 1;
    for (int32_t c : corner[r]) {
      const size_t cr = static_cast<size_t>(c);
      if (color[cr] == 1 || (color[cr] == 0 && dfs(cr))) {
        if (bad.empty()) bad = g.names[cr];
        return true;
      }
    }
    color[r] = 2;
    return false;
  };
  for (size_t r = 0; r < n; ++r)
    if (color[r] == 0 && dfs(r))
      return Errorf(
          "grammar: rule '%s' is left-recursive (or repeats something that can be "
          "empty): rewrite it so that it consumes a character first",
          bad.c_str());
  return Status::Ok();
}

}  // namespace

Result<Grammar> ParseGbnf(std::string_view text, std::string_view root) {
  Parser p(text, root);
  STRATA_RETURN_IF_ERROR(p.Run());
  Lowering low(p.rules());
  Grammar g = low.Run(p.root());
  STRATA_RETURN_IF_ERROR(CheckLeftRecursion(g));
  return g;
}

std::string GbnfLiteral(std::string_view s) {
  std::string out = "\"";
  for (unsigned char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '\r') {
      out += "\\r";
    } else if (c == '\t') {
      out += "\\t";
    } else if (c < 0x20 || c == 0x7F) {
      static const char* hex = "0123456789ABCDEF";
      out += "\\x";
      out += hex[c >> 4];
      out += hex[c & 15];
    } else {
      out += static_cast<char>(c);
    }
  }
  return out + "\"";
}

}  // namespace strata::grammar
