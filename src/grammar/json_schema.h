// JSON Schema (the common subset) to GBNF. Supported: type (also a list), properties,
// required, additionalProperties false or absent (only declared properties are generated),
// enum, const, items, minItems, maxItems, nested objects, anyOf, oneOf, allOf with one entry,
// $ref to #/$defs/... or #/definitions/..., string minLength/maxLength and format date,
// date-time, time, uuid, email; integer minimum/maximum (exclusive too); number bounds when
// they are integers. Annotations (title, description, default, examples, ...) are ignored.
// Any other keyword is an error naming it: a schema is never silently unconstrained.
#pragma once

#include <string>

#include <nlohmann/json.hpp>

#include "base/status.h"

namespace strata::grammar {

// Properties are generated in the order the schema declares them (hence ordered_json).
// GBNF text whose rule `root` matches exactly the JSON texts generated for `schema`.
Result<std::string> JsonSchemaToGbnf(const nlohmann::ordered_json& schema);

// The same rules without the common ones (JsonCommonRules), every rule name starting with
// `prefix` (start rule PREFIX + "root"): several schemas in one grammar.
Result<std::string> JsonSchemaRules(const nlohmann::ordered_json& schema,
                                    const std::string& prefix);
std::string JsonCommonRules();

// GBNF for any JSON value whose top level is an object (response_format json_object).
std::string JsonObjectGbnf();

}  // namespace strata::grammar
