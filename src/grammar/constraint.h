// What a request constrains its output to, compiled into an Automaton (cached by grammar
// text). Also the API for tool calls: a JSON schema between fixed literal texts, e.g.
//   ConstraintSpec s;
//   s.kind = ConstraintSpec::kJsonSchema;
//   s.schema = function["parameters"];
//   s.prefix = "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": ";
//   s.suffix = "}\n</tool_call>";
//   auto automaton = cache.Get(s);  // then one Matcher per generation
// (kSchemaChoice: one of several such framed schemas, for a call to any of several tools.)
#pragma once

#include <list>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include <nlohmann/json.hpp>

#include "base/status.h"
#include "grammar/matcher.h"

namespace strata::grammar {

struct ConstraintSpec {
  enum Kind { kNone, kGbnf, kJsonSchema, kJsonObject, kSchemaChoice };
  Kind kind = kNone;
  std::string gbnf;               // kGbnf: the grammar text (start rule "root")
  nlohmann::ordered_json schema;  // kJsonSchema (properties keep their order)
  // kSchemaChoice: one of several schemas, each between its own literal texts (a call to one
  // of several tools: the markup names the function).
  struct Framed {
    std::string prefix;
    nlohmann::ordered_json schema;
    std::string suffix;
  };
  std::vector<Framed> choices;
  // Literal text before and after the constrained part.
  std::string prefix, suffix;
  // Up to 4 whitespace characters may come first (after a closed thinking block).
  bool leading_ws = false;
};

// The GBNF text of the spec, with start rule "strata-root". Errors: an unsupported or invalid
// schema (the message names the keyword).
Result<std::string> SpecToGbnf(const ConstraintSpec& spec);

// Compiled grammars for one vocabulary, least recently used dropped beyond `capacity`.
// Thread-safe. Automata keep their cached transitions and masks between requests.
class GrammarCache {
 public:
  explicit GrammarCache(std::shared_ptr<const TokenVocab> vocab, size_t capacity = 32)
      : vocab_(std::move(vocab)), capacity_(capacity) {}
  Result<std::shared_ptr<Automaton>> Get(const ConstraintSpec& spec);
  const std::shared_ptr<const TokenVocab>& vocab() const { return vocab_; }

 private:
  std::shared_ptr<const TokenVocab> vocab_;
  size_t capacity_;
  std::mutex mu_;
  std::list<std::pair<std::string, std::shared_ptr<Automaton>>> lru_;
  std::unordered_map<std::string, decltype(lru_)::iterator> index_;
};

}  // namespace strata::grammar
