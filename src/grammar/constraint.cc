#include "grammar/constraint.h"

#include "grammar/json_schema.h"

namespace strata::grammar {

namespace {

// root ::= PREFIX0 c0-root SUFFIX0 | PREFIX1 c1-root SUFFIX1 | ...
Result<std::string> SchemaChoiceGbnf(const std::vector<ConstraintSpec::Framed>& choices) {
  if (choices.empty()) return Status::Error("no schema to choose from");
  std::string root = "root ::=", rules;
  for (size_t i = 0; i < choices.size(); ++i) {
    const std::string prefix = "c" + std::to_string(i) + "-";
    STRATA_ASSIGN_OR_RETURN(std::string r, JsonSchemaRules(choices[i].schema, prefix));
    rules += r;
    root += i == 0 ? " " : " | ";
    if (!choices[i].prefix.empty()) root += GbnfLiteral(choices[i].prefix) + " ";
    root += prefix + "root";
    if (!choices[i].suffix.empty()) root += " " + GbnfLiteral(choices[i].suffix);
  }
  return root + "\n" + rules + JsonCommonRules();
}

}  // namespace

Result<std::string> SpecToGbnf(const ConstraintSpec& spec) {
  std::string body;
  switch (spec.kind) {
    case ConstraintSpec::kGbnf: body = spec.gbnf; break;
    case ConstraintSpec::kJsonSchema: {
      STRATA_ASSIGN_OR_RETURN(body, JsonSchemaToGbnf(spec.schema));
      break;
    }
    case ConstraintSpec::kJsonObject: body = JsonObjectGbnf(); break;
    case ConstraintSpec::kSchemaChoice: {
      STRATA_ASSIGN_OR_RETURN(body, SchemaChoiceGbnf(spec.choices));
      break;
    }
    case ConstraintSpec::kNone: return Status::Error("no constraint");
  }
  std::string root = "strata-root ::=";
  if (spec.leading_ws) root += " [ \\t\\n]{0,4}";
  if (!spec.prefix.empty()) root += " " + GbnfLiteral(spec.prefix);
  root += " root";
  if (!spec.suffix.empty()) root += " " + GbnfLiteral(spec.suffix);
  return body + "\n" + root + "\n";
}

Result<std::shared_ptr<Automaton>> GrammarCache::Get(const ConstraintSpec& spec) {
  STRATA_ASSIGN_OR_RETURN(std::string text, SpecToGbnf(spec));
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = index_.find(text);
    if (it != index_.end()) {
      lru_.splice(lru_.begin(), lru_, it->second);
      return it->second->second;
    }
  }
  STRATA_ASSIGN_OR_RETURN(Grammar g, ParseGbnf(text, "strata-root"));
  auto a = std::make_shared<Automaton>(std::move(g), vocab_);
  if (a->Start() == Automaton::kDead) return Status::Error("the grammar matches nothing");
  std::lock_guard<std::mutex> lock(mu_);
  auto it = index_.find(text);
  if (it != index_.end()) return it->second->second;
  lru_.emplace_front(text, a);
  index_[text] = lru_.begin();
  while (lru_.size() > capacity_) {
    index_.erase(lru_.back().first);
    lru_.pop_back();
  }
  return a;
}

}  // namespace strata::grammar
