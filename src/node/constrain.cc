// A request's constraint (grammar / JSON schema) and thinking budget, turned into scheduler
// parameters (docs/constrained-decoding.md).
#include <algorithm>

#include "node/server_impl.h"
#include "tokenizer/tool_calls.h"

namespace strata::node {

namespace {

// A completion prompt that ends by opening a thinking block.
bool OpensThinking(const std::string& prompt) {
  size_t end = prompt.find_last_not_of(" \t\r\n");
  end = end == std::string::npos ? 0 : end + 1;
  return end >= 7 && prompt.compare(end - 7, 7, "<think>") == 0;
}

// tool_choice "required" or a named function: one call in the family's markup whose arguments
// match the function's parameters schema (of any of the tools for "required").
grammar::ConstraintSpec ForcedCallSpec(const GenRequest& g, ChatFamily family) {
  grammar::ConstraintSpec spec;
  spec.kind = grammar::ConstraintSpec::kSchemaChoice;
  for (const nlohmann::ordered_json& t : g.tools) {
    const nlohmann::ordered_json& f = t["function"];
    const std::string name = f["name"].get<std::string>();
    if (g.tool_choice == "function" && name != g.tool_choice_name) continue;
    ToolCallFrame frame = ToolCallMarkup(family, name);
    // No parameters: the function takes none (an empty object).
    nlohmann::ordered_json schema = f.contains("parameters") && !f["parameters"].is_null()
                                        ? f["parameters"]
                                        : nlohmann::ordered_json{{"type", "object"}};
    spec.choices.push_back({std::move(frame.prefix), std::move(schema), std::move(frame.suffix)});
  }
  return spec;
}

bool ForcesCall(const GenRequest& g) {
  return g.endpoint == Endpoint::kChat &&
         (g.tool_choice == "required" || g.tool_choice == "function");
}

}  // namespace

std::optional<ApiError> Server::Constrain(const GenRequest& g, bool in_reasoning,
                                          SchedRequestParams* p) {
  if (g.endpoint == Endpoint::kCompletions)
    in_reasoning = !g.prompt_is_ids && OpensThinking(g.prompt);
  p->ignore_eos = g.ignore_eos;
  if (in_reasoning) {
    int budget = o_.reasoning_budget;
    if (g.thinking_budget >= 0)
      budget = budget < 0 ? g.thinking_budget : std::min(budget, g.thinking_budget);
    p->in_reasoning = true;
    p->thinking_budget = budget;
    // The message as text, then "</think>" (its own token when the vocabulary has one).
    p->think_close = tok_->Encode(o_.reasoning_budget_message, false, false);
    const std::vector<int32_t> close = tok_->Encode("</think>", false, true);
    p->think_close.insert(p->think_close.end(), close.begin(), close.end());
  }
  const bool forced = ForcesCall(g);
  if (forced && g.constraint.kind != grammar::ConstraintSpec::kNone)
    return BadRequest("'tool_choice' \"" + g.tool_choice +
                      "\" cannot be combined with response_format, grammar or json_schema");
  if (g.constraint.kind == grammar::ConstraintSpec::kNone && !forced) return std::nullopt;
  if (pipeline()) {
    ApiError e = BadRequest(
        "constrained decoding (response_format, grammar, json_schema, tool_choice required or "
        "a named function) needs a node that serves the whole model: this node is the head of "
        "a pipeline");
    if (forced) e.code = "unsupported_tool_choice";
    return e;
  }
  grammar::ConstraintSpec spec = forced ? ForcedCallSpec(g, template_.family) : g.constraint;
  spec.leading_ws = in_reasoning;
  grammar::GrammarCache* cache = nullptr;
  {
    std::lock_guard<std::mutex> lock(grammars_mu_);
    if (!grammars_)
      grammars_ =
          std::make_unique<grammar::GrammarCache>(grammar::TokenVocab::FromTokenizer(*tok_));
    cache = grammars_.get();
  }
  auto a = cache->Get(spec);
  if (!a.ok()) {
    ApiError e = BadRequest(a.status().message());
    e.code = spec.kind == grammar::ConstraintSpec::kGbnf ? "invalid_grammar" : "unsupported_schema";
    if (forced) e.message = "tools: " + e.message;
    return e;
  }
  p->constraint = std::make_shared<grammar::Matcher>(std::move(a).value());
  return std::nullopt;
}

}  // namespace strata::node
