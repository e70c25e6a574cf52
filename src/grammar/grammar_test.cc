// Grammar engine tests: GBNF parsing and errors, byte/UTF-8 matching, token masks against a
// brute-force check (also on the real 151,936-token Qwen2 vocabulary, with its timing), and
// JSON Schema conversion.
#include <gtest/gtest.h>

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "gguf/gguf.h"
#include "grammar/constraint.h"
#include "grammar/gbnf.h"
#include "grammar/json_schema.h"
#include "grammar/matcher.h"
#include "grammar/utf8_ranges.h"
#include "tokenizer/tokenizer.h"

namespace strata::grammar {
namespace {

using json = nlohmann::ordered_json;

std::shared_ptr<const TokenVocab> SmallVocab() {
  std::vector<std::string> p = {"<eos>", "a",    "b",  "ab", "abc", "{",  "}", "\"",
                                "\"a\"", "1",    "12", "x",  " ",   "\n", "é", "\xC3",
                                "\xA9",  "日本", "-",  "0",  ".",   "5"};
  std::vector<bool> text(p.size(), true);
  text[0] = false;
  return std::make_shared<const TokenVocab>(p, text, std::vector<int32_t>{0});
}

std::shared_ptr<Automaton> Compile(const std::string& gbnf,
                                   std::shared_ptr<const TokenVocab> v = SmallVocab()) {
  auto g = ParseGbnf(gbnf);
  EXPECT_TRUE(g.ok()) << g.status().message() << "\n" << gbnf;
  if (!g.ok()) return nullptr;
  return std::make_shared<Automaton>(std::move(g).value(), std::move(v));
}

bool Matches(const std::shared_ptr<Automaton>& a, const std::string& s) {
  Matcher m(a);
  return m.AcceptBytes(s) && m.Accepting();
}

std::string ParseError(const std::string& gbnf) {
  auto g = ParseGbnf(gbnf);
  return g.ok() ? "" : g.status().message();
}

TEST(Gbnf, LiteralsClassesAndRepetitions) {
  auto a = Compile(R"(# a comment
root ::= "a" [b-d]+ "e"? tail   # trailing comment
tail ::= ( "x" | "yz" ){2,3}
  | "!"
)");
  ASSERT_TRUE(a);
  EXPECT_TRUE(Matches(a, "abxx"));
  EXPECT_TRUE(Matches(a, "abcdeyzxyz"));
  EXPECT_TRUE(Matches(a, "ad!"));
  EXPECT_FALSE(Matches(a, "a!"));   // + needs one
  EXPECT_FALSE(Matches(a, "abx"));  // {2,3}
  EXPECT_FALSE(Matches(a, "abxxxx"));
  EXPECT_FALSE(Matches(a, "abee!"));
}

TEST(Gbnf, EscapesAndDot) {
  auto a = Compile(R"(root ::= "\x41\u00e9\n" [\]\-\\]* . "\"")");
  ASSERT_TRUE(a);
  EXPECT_TRUE(Matches(a, "A\xC3\xA9\n]-\\\xE6\x97\xA5\""));
  EXPECT_TRUE(Matches(a, "A\xC3\xA9\nz\""));
  EXPECT_FALSE(Matches(a, "A\xC3\xA9\n\""));
}

TEST(Gbnf, NegatedClassIsUtf8Exact) {
  auto a = Compile(R"(root ::= [^a\x00-\x1F]{1,2})");
  ASSERT_TRUE(a);
  EXPECT_TRUE(Matches(a, "b"));
  EXPECT_TRUE(Matches(a, "\xC3\xA9"));                      // é
  EXPECT_TRUE(Matches(a, "\xE6\x97\xA5\xF0\x9F\x98\x80"));  // 日😀
  EXPECT_FALSE(Matches(a, "a"));
  EXPECT_FALSE(Matches(a, "\n"));
  EXPECT_FALSE(Matches(a, "\xC0\x80"));      // overlong
  EXPECT_FALSE(Matches(a, "\xED\xA0\x80"));  // surrogate
  EXPECT_FALSE(Matches(a, "\xC3"));          // incomplete
  EXPECT_FALSE(Matches(a, "bbb"));
}

TEST(Gbnf, Utf8SplitAgreesWithDecoding) {
  // Every code point in a few ranges (and just outside them) against the byte sequences.
  const CodeRanges r =
      Normalize({{0x41, 0x5A}, {0x7F, 0x801}, {0xD7F0, 0xE010}, {0xFFF0, 0x10010}});
  const std::vector<Utf8Seq> seqs = SplitUtf8(r);
  auto in_seqs = [&](const std::string& s) {
    for (const Utf8Seq& q : seqs) {
      if (q.size() != s.size()) continue;
      bool ok = true;
      for (size_t i = 0; i < q.size() && ok; ++i) {
        const auto b = static_cast<uint8_t>(s[i]);
        ok = b >= q[i].first && b <= q[i].second;
      }
      if (ok) return true;
    }
    return false;
  };
  for (uint32_t cp = 0; cp < 0x10100; ++cp) {
    if (cp >= 0xD800 && cp <= 0xDFFF) continue;
    std::string s;
    if (cp < 0x80) {
      s = std::string(1, static_cast<char>(cp));
    } else if (cp < 0x800) {
      s = {static_cast<char>(0xC0 | (cp >> 6)), static_cast<char>(0x80 | (cp & 0x3F))};
    } else if (cp < 0x10000) {
      s = {static_cast<char>(0xE0 | (cp >> 12)), static_cast<char>(0x80 | ((cp >> 6) & 0x3F)),
           static_cast<char>(0x80 | (cp & 0x3F))};
    } else {
      s = {static_cast<char>(0xF0 | (cp >> 18)), static_cast<char>(0x80 | ((cp >> 12) & 0x3F)),
           static_cast<char>(0x80 | ((cp >> 6) & 0x3F)), static_cast<char>(0x80 | (cp & 0x3F))};
    }
    bool want = false;
    for (auto [lo, hi] : r) want = want || (cp >= lo && cp <= hi);
    ASSERT_EQ(in_seqs(s), want) << std::hex << cp;
  }
}

TEST(Gbnf, ErrorsNameLineAndColumn) {
  EXPECT_NE(ParseError("root ::= \"a\"\nfoo ::= \"b\" \\q").find("line 2, column 13"),
            std::string::npos)
      << ParseError("root ::= \"a\"\nfoo ::= \"b\" \\q");
  EXPECT_NE(ParseError("root ::= bar").find("undefined rule 'bar'"), std::string::npos);
  EXPECT_NE(ParseError("start ::= \"a\"").find("no rule named 'root'"), std::string::npos);
  EXPECT_NE(ParseError("root ::= \"abc").find("unterminated string"), std::string::npos);
  EXPECT_NE(ParseError("root ::= [a-").find("line 1"), std::string::npos);
  EXPECT_NE(ParseError("root ::= \"a\"{3,1}").find("n < m"), std::string::npos);
  EXPECT_NE(ParseError("root ::= root \"a\" | \"b\"").find("left-recursive"), std::string::npos);
  EXPECT_NE(ParseError("root ::= (\"a\"?)*").find("left-recursive"), std::string::npos);
  EXPECT_NE(ParseError("root ::= \"a\" ( \"b\"").find("expected ')'"), std::string::npos);
}

// The mask must equal a token-by-token check of the matcher.
void ExpectMaskIsExact(const std::shared_ptr<Automaton>& a, const Matcher& m) {
  const TokenMask mask = *m.Mask();
  for (int32_t id = 0; id < a->vocab().n_vocab(); ++id) {
    Matcher copy = m;
    const bool ok = copy.AcceptToken(id);
    ASSERT_EQ(MaskHas(mask, id), ok) << "token " << id << " '" << a->vocab().piece(id) << "'";
  }
}

TEST(Masks, SmallVocabularyExact) {
  auto a = Compile(R"(root ::= "{" [ab]* "}" | "-"? [0-9]+ ("." [0-9]+)? | "é" "日本"?)");
  ASSERT_TRUE(a);
  Matcher m(a);
  ExpectMaskIsExact(a, m);
  for (const char* step : {"{", "a", "b"}) {
    ASSERT_TRUE(m.AcceptBytes(step));
    ExpectMaskIsExact(a, m);
  }
  Matcher n(a);
  ASSERT_TRUE(n.AcceptBytes("\xC3"));  // half a character: only its other half may follow
  const TokenMask mask = *n.Mask();
  EXPECT_TRUE(MaskHas(mask, 16));   // "\xA9"
  EXPECT_FALSE(MaskHas(mask, 14));  // "é"
  ASSERT_TRUE(n.AcceptToken(16));
  EXPECT_TRUE(n.Accepting());
  EXPECT_TRUE(MaskHas(*n.Mask(), 0));  // end of generation once complete
  EXPECT_TRUE(n.AcceptToken(0));
  EXPECT_TRUE(n.finished());
}

const Tokenizer& Qwen2() {
  static std::unique_ptr<Tokenizer> tok = [] {
    auto f = gguf::File::Open(std::string(STRATA_TEST_DATA) + "/vocab/ggml-vocab-qwen2.gguf");
    EXPECT_TRUE(f.ok());
    auto t = Tokenizer::FromGguf(*f.value());
    EXPECT_TRUE(t.ok());
    return std::move(t).value();
  }();
  return *tok;
}

TEST(Masks, RealVocabularyExactAndFast) {
  const Tokenizer& tok = Qwen2();
  auto vocab = TokenVocab::FromTokenizer(tok);
  ASSERT_EQ(vocab->n_vocab(), tok.n_vocab());
  ConstraintSpec spec;
  spec.kind = ConstraintSpec::kJsonSchema;
  spec.schema = json::parse(R"({"type":"object","properties":{
      "name":{"type":"string","maxLength":40},"age":{"type":"integer","minimum":0,"maximum":150},
      "tags":{"type":"array","items":{"type":"string"},"maxItems":3}},
      "required":["name","age"],"additionalProperties":false})");
  spec.leading_ws = true;
  GrammarCache cache(vocab);
  auto a = cache.Get(spec);
  ASSERT_TRUE(a.ok()) << a.status().message();
  Matcher m(a.value());
  // Exact at a few points of an answer, checked against every token of the vocabulary.
  const std::vector<std::string> steps = {"\n", "{\"", "name\": \"Al", "ice\", ", "\"age\": 4"};
  for (const std::string& s : steps) {
    ASSERT_TRUE(m.AcceptBytes(s)) << s;
    ExpectMaskIsExact(a.value(), m);
  }
  // Timing: a new state's mask (the trie walk) and a cached one.
  Matcher t(a.value());
  ASSERT_TRUE(t.AcceptBytes("{\"name\": \"Bob the Builder of"));
  const auto t0 = std::chrono::steady_clock::now();
  auto fresh = t.Mask();
  const double fresh_ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  const auto t1 = std::chrono::steady_clock::now();
  for (int i = 0; i < 100; ++i) (void)t.Mask();
  const double cached_ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t1).count() /
      100;
  a.value()->DropMasks();  // the walk alone, its transitions known
  const auto t2 = std::chrono::steady_clock::now();
  (void)t.Mask();
  const double walk_ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t2).count();
  std::printf("mask: new state %.2f ms (walk %.2f ms), cached %.4f ms, %zu states\n", fresh_ms,
              walk_ms, cached_ms, a.value()->n_states());
  EXPECT_LT(cached_ms, 0.5);
  // The JSON string's inside: most of the vocabulary is allowed, control tokens are not.
  size_t n = 0;
  for (int32_t id = 0; id < tok.n_vocab(); ++id) n += MaskHas(*fresh, id);
  EXPECT_GT(n, 100000u);
  EXPECT_FALSE(MaskHas(*fresh, tok.eos()));
}

// The cost per generated token of a constrained answer: the mask of each state, then the
// token accepted, over real answers tokenized with the real vocabulary. First answer: every
// state new; a second answer with other values: the schema's states mostly known.
TEST(Masks, CostPerTokenOfAJsonAnswer) {
  const Tokenizer& tok = Qwen2();
  ConstraintSpec spec;
  spec.kind = ConstraintSpec::kJsonSchema;
  spec.schema = json::parse(R"({"type":"object","properties":{"items":{"type":"array",
      "items":{"type":"object","properties":{"name":{"type":"string"},"qty":{"type":"integer"},
      "tags":{"type":"array","items":{"type":"string"}}},"required":["name","qty","tags"]}}},
      "required":["items"]})");
  GrammarCache cache(TokenVocab::FromTokenizer(tok));
  auto a = cache.Get(spec);
  ASSERT_TRUE(a.ok());
  auto replay = [&](const std::string& answer) {
    const std::vector<int32_t> ids = tok.Encode(answer, false, false);
    Matcher m(a.value());
    const auto t0 = std::chrono::steady_clock::now();
    for (int32_t id : ids) {
      auto mask = m.Mask();
      EXPECT_TRUE(MaskHas(*mask, id)) << tok.TokenToPiece(id);
      EXPECT_TRUE(m.AcceptToken(id));
    }
    EXPECT_TRUE(m.Accepting());
    return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0)
               .count() /
           static_cast<double>(ids.size());
  };
  const double cold =
      replay(R"({"items": [{"name": "copper wire", "qty": 12, "tags": ["metal", "spool"]},
    {"name": "lantern", "qty": 3, "tags": []}, {"name": "quartz prism", "qty": 250, "tags": ["glass"]}]})");
  const double warm = replay(R"({"items": [{"name": "velvet rope", "qty": 7, "tags": ["red"]},
    {"name": "signal flare", "qty": 40, "tags": ["safety", "orange", "bright"]}]})");
  const double same = replay(R"({"items": [{"name": "velvet rope", "qty": 7, "tags": ["red"]},
    {"name": "signal flare", "qty": 40, "tags": ["safety", "orange", "bright"]}]})");
  std::printf(
      "mask cost per token: first answer %.2f ms, second (new values) %.2f ms, "
      "repeated %.3f ms; %zu states\n",
      cold, warm, same, a.value()->n_states());
}

// ---- JSON Schema ----

std::shared_ptr<Automaton> FromSchema(const std::string& schema) {
  auto text = JsonSchemaToGbnf(json::parse(schema));
  EXPECT_TRUE(text.ok()) << text.status().message();
  if (!text.ok()) return nullptr;
  return Compile(text.value());
}

std::string SchemaError(const std::string& schema) {
  auto text = JsonSchemaToGbnf(json::parse(schema));
  return text.ok() ? "" : text.status().message();
}

TEST(JsonSchema, ObjectsRequiredOptionalAndNesting) {
  auto a = FromSchema(R"({"type":"object","properties":{"a":{"type":"integer"},
      "b":{"type":"string"},"c":{"type":"object","properties":{"d":{"type":"boolean"}},
      "required":["d"]}},"required":["b"]})");
  ASSERT_TRUE(a);
  EXPECT_TRUE(Matches(a, R"({"b": "x"})"));
  EXPECT_TRUE(Matches(a, R"({"a": -12, "b": "x\n\u00e9", "c": {"d": true}})"));
  EXPECT_TRUE(Matches(a, "{\n  \"a\":1,\"b\":\"\"\n}"));
  EXPECT_FALSE(Matches(a, R"({"a": 1})"));             // b required
  EXPECT_FALSE(Matches(a, R"({"b": "x", "z": 1})"));   // no additional properties
  EXPECT_FALSE(Matches(a, R"({"b": "x", "c": {}})"));  // d required
  EXPECT_FALSE(Matches(a, R"({"b": "x",})"));
  EXPECT_FALSE(Matches(a, R"({"a": 01, "b": ""})"));
}

TEST(JsonSchema, EnumsConstUnionsRefsArrays) {
  auto a = FromSchema(R"({"$defs":{"node":{"type":"object","properties":{
      "v":{"enum":["x",1,null]},"kids":{"type":"array","items":{"$ref":"#/$defs/node"},"maxItems":2}},
      "required":["v"]}},
      "type":"object","properties":{"root":{"$ref":"#/$defs/node"},"k":{"const":"fixed"},
      "u":{"anyOf":[{"type":"null"},{"type":["integer","boolean"]}]},
      "l":{"type":"array","items":{"type":"number"},"minItems":2,"maxItems":3}},
      "required":["root","k","u","l"]})");
  ASSERT_TRUE(a);
  EXPECT_TRUE(Matches(
      a,
      R"({"root": {"v": "x", "kids": [{"v": 1}, {"v": null, "kids": []}]}, "k": "fixed", "u": null, "l": [1.5, -2e3]})"));
  EXPECT_TRUE(Matches(a, R"({"root": {"v": 1}, "k": "fixed", "u": true, "l": [0, 1, 2]})"));
  EXPECT_FALSE(Matches(a, R"({"root": {"v": 2}, "k": "fixed", "u": 1, "l": [0, 1]})"));
  EXPECT_FALSE(Matches(a, R"({"root": {"v": 1}, "k": "other", "u": 1, "l": [0, 1]})"));
  EXPECT_FALSE(Matches(a, R"({"root": {"v": 1}, "k": "fixed", "u": 1, "l": [0]})"));
  EXPECT_FALSE(Matches(a, R"({"root": {"v": 1}, "k": "fixed", "u": 1, "l": [0, 1, 2, 3]})"));
  EXPECT_FALSE(Matches(
      a,
      R"({"root": {"v": 1, "kids": [{"v": 1}, {"v": 1}, {"v": 1}]}, "k": "fixed", "u": 1, "l": [0, 1]})"));
}

TEST(JsonSchema, IntegerBoundsExhaustive) {
  const std::vector<std::pair<std::string, std::pair<int, int>>> cases = {
      {R"({"type":"integer","minimum":0,"maximum":150})", {0, 150}},
      {R"({"type":"integer","minimum":-37,"maximum":205})", {-37, 205}},
      {R"({"type":"integer","minimum":-250,"maximum":-3})", {-250, -3}},
      {R"({"type":"integer","exclusiveMinimum":9,"exclusiveMaximum":100})", {10, 99}},
      {R"({"type":"integer","minimum":17})", {17, 1 << 30}},
      {R"({"type":"integer","maximum":-17})", {-(1 << 30), -17}}};
  for (const auto& [schema, range] : cases) {
    auto a = FromSchema(schema);
    ASSERT_TRUE(a);
    for (int v = -300; v <= 300; ++v)
      ASSERT_EQ(Matches(a, std::to_string(v)), v >= range.first && v <= range.second)
          << schema << " " << v;
    EXPECT_EQ(Matches(a, "123456"), 123456 <= range.second);
    EXPECT_FALSE(Matches(a, "007"));
  }
}

TEST(JsonSchema, NumberBoundsStringsAndFormats) {
  auto n = FromSchema(R"({"type":"number","minimum":-2,"maximum":3})");
  ASSERT_TRUE(n);
  for (const char* ok : {"3", "-2", "0.5", "2.999", "-1.5", "-0.25", "0"})
    EXPECT_TRUE(Matches(n, ok)) << ok;
  for (const char* bad : {"3.5", "-2.5", "4", "-3", "1e2"}) EXPECT_FALSE(Matches(n, bad)) << bad;
  auto s = FromSchema(R"({"type":"string","minLength":2,"maxLength":3})");
  ASSERT_TRUE(s);
  EXPECT_TRUE(Matches(s, "\"ab\""));
  EXPECT_TRUE(Matches(s, "\"a\\n\xC3\xA9\""));
  EXPECT_FALSE(Matches(s, "\"a\""));
  EXPECT_FALSE(Matches(s, "\"abcd\""));
  EXPECT_NE(SchemaError(R"({"type":"array","items":[{"type":"string"}]})").find("items"),
            std::string::npos);
  auto f = FromSchema(R"({"type":"object","properties":{"d":{"type":"string","format":"date"},
      "t":{"type":"string","format":"date-time"},"u":{"type":"string","format":"uuid"},
      "e":{"type":"string","format":"email"},"h":{"type":"string","format":"time"}},
      "required":["d","t","u","e","h"]})");
  ASSERT_TRUE(f);
  EXPECT_TRUE(Matches(
      f,
      R"({"d": "2024-02-29", "t": "2024-12-03T22:30:00Z", "u": "123e4567-e89b-12d3-a456-426614174000", "e": "a.b@example.co", "h": "23:59:59.5+01:00"})"));
  EXPECT_FALSE(Matches(
      f,
      R"({"d": "2024-13-01", "t": "2024-12-03T22:30:00Z", "u": "123e4567-e89b-12d3-a456-426614174000", "e": "a.b@example.co", "h": "23:59:59Z"})"));
  EXPECT_FALSE(Matches(
      f,
      R"({"d": "2024-12-01", "t": "2024-12-03", "u": "123e4567-e89b-12d3-a456-426614174000", "e": "a.b@example.co", "h": "23:59:59Z"})"));
  EXPECT_FALSE(Matches(
      f,
      R"({"d": "2024-12-01", "t": "2024-12-03T22:30:00Z", "u": "123e4567", "e": "a.b@example.co", "h": "23:59:59Z"})"));
  EXPECT_FALSE(Matches(
      f,
      R"({"d": "2024-12-01", "t": "2024-12-03T22:30:00Z", "u": "123e4567-e89b-12d3-a456-426614174000", "e": "nobody", "h": "23:59:59Z"})"));
}

TEST(JsonSchema, UnsupportedKeywordsAreNamed) {
  EXPECT_NE(SchemaError(R"({"type":"string","pattern":"^a+$"})").find("'pattern'"),
            std::string::npos);
  EXPECT_NE(SchemaError(R"({"type":"object","properties":{"x":{"type":"string","format":"ipv4"}}})")
                .find("format"),
            std::string::npos);
  EXPECT_NE(
      SchemaError(R"({"type":"object","properties":{},"additionalProperties":{"type":"string"}})")
          .find("additionalProperties"),
      std::string::npos);
  EXPECT_NE(SchemaError(R"({"type":"object","properties":{"a":{"not":{}}}})")
                .find("'not' at #/properties/a"),
            std::string::npos);
  EXPECT_NE(SchemaError(R"({"$ref":"http://example.com/x"})").find("$ref"), std::string::npos);
  EXPECT_NE(SchemaError(R"({"type":"number","minimum":0.5})").find("minimum"), std::string::npos);
  EXPECT_EQ(SchemaError(R"({"title":"t","description":"d","type":"integer"})"), "");
}

TEST(Constraint, PrefixSuffixAndLeadingWhitespace) {
  ConstraintSpec spec;
  spec.kind = ConstraintSpec::kJsonSchema;
  spec.schema = json::parse(
      R"({"type":"object","properties":{"city":{"type":"string"}},"required":["city"]})");
  spec.prefix = "<tool_call>\n{\"name\": \"weather\", \"arguments\": ";
  spec.suffix = "}\n</tool_call>";
  spec.leading_ws = true;
  GrammarCache cache(SmallVocab());
  auto a = cache.Get(spec);
  ASSERT_TRUE(a.ok()) << a.status().message();
  EXPECT_TRUE(Matches(
      a.value(),
      "\n<tool_call>\n{\"name\": \"weather\", \"arguments\": {\"city\": \"Oslo\"}}\n</tool_call>"));
  EXPECT_FALSE(
      Matches(a.value(), "<tool_call>\n{\"name\": \"weather\", \"arguments\": {}}\n</tool_call>"));
  auto again = cache.Get(spec);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again.value().get(), a.value().get());  // cached
  ConstraintSpec obj;
  obj.kind = ConstraintSpec::kJsonObject;
  auto o = cache.Get(obj);
  ASSERT_TRUE(o.ok());
  EXPECT_TRUE(Matches(o.value(), R"({"a": [1, {"b": null}], "c": "d"})"));
  EXPECT_FALSE(Matches(o.value(), "[1]"));
}

// One of several framed schemas (tool_choice "required" over several tools): each name goes
// with its own arguments' schema only; recursive $refs of two schemas do not collide.
TEST(Constraint, SchemaChoice) {
  ConstraintSpec spec;
  spec.kind = ConstraintSpec::kSchemaChoice;
  spec.choices.push_back({"<a>", json::parse(R"({"type":"object","properties":{
      "n":{"type":"integer","minimum":1,"maximum":9}},"required":["n"]})"),
                          "</a>"});
  const char* tree = R"({"$defs":{"t":{"type":"object","properties":{"k":{"type":"array",
      "items":{"$ref":"#/$defs/t"},"maxItems":2}},"required":["k"]}},"$ref":"#/$defs/t"})";
  spec.choices.push_back({"<b>", json::parse(tree), "</b>"});
  spec.choices.push_back({"<c>", json::parse(R"({"enum":["x","y"]})"), ""});
  spec.leading_ws = true;
  GrammarCache cache(SmallVocab());
  auto a = cache.Get(spec);
  ASSERT_TRUE(a.ok()) << a.status().message();
  EXPECT_TRUE(Matches(a.value(), "<a>{\"n\": 7}</a>"));
  EXPECT_TRUE(Matches(a.value(), " <b>{\"k\": [{\"k\": []}, {\"k\": []}]}</b>"));
  EXPECT_TRUE(Matches(a.value(), "<c>\"y\""));
  EXPECT_FALSE(Matches(a.value(), "<a>{\"k\": []}</a>"));  // b's arguments under a's name
  EXPECT_FALSE(Matches(a.value(), "<b>{\"n\": 7}</b>"));
  EXPECT_FALSE(Matches(a.value(), "<a>{\"n\": 7}</b>"));
  EXPECT_FALSE(Matches(a.value(), "<a>{\"n\": 10}</a>"));
  spec.choices[1].schema = json::parse(R"({"type":"string","pattern":"a+"})");
  auto bad = cache.Get(spec);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("'pattern'"), std::string::npos);
  spec.choices.clear();
  EXPECT_FALSE(cache.Get(spec).ok());
}

}  // namespace
}  // namespace strata::grammar
