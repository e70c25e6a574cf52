#include "grammar/json_schema.h"

#include <cmath>
#include <map>
#include <set>
#include <vector>

#include "grammar/gbnf.h"

namespace strata::grammar {

using json = nlohmann::ordered_json;

namespace {

// The rules every schema grammar may use.
constexpr const char* kCommonRules = R"(ws ::= | " " | "\n" [ \t]{0,12}
json-char ::= [^"\\\x00-\x1F] | "\\" (["\\/bfnrt] | "u" [0-9a-fA-F]{4})
json-string ::= "\"" json-char* "\""
json-int ::= "-"? ("0" | [1-9] [0-9]{0,15})
json-number ::= json-int ("." [0-9]{1,16})? ([eE] [-+]? [0-9]{1,3})?
json-bool ::= "true" | "false"
json-null ::= "null"
json-value ::= json-object | json-array | json-string | json-number | json-bool | json-null
json-object ::= "{" ws ( json-string ws ":" ws json-value (ws "," ws json-string ws ":" ws json-value)* ws )? "}"
json-array ::= "[" ws ( json-value (ws "," ws json-value)* ws )? "]"
d2 ::= [0-9] [0-9]
json-date ::= "\"" [0-9] [0-9] [0-9] [0-9] "-" ("0" [1-9] | "1" [0-2]) "-" ("0" [1-9] | [12] [0-9] | "3" [01]) "\""
json-time-body ::= ([01] [0-9] | "2" [0-3]) ":" [0-5] [0-9] ":" [0-5] [0-9] ("." [0-9]{1,6})? ("Z" | [-+] ([01] [0-9] | "2" [0-3]) ":" [0-5] [0-9])
json-time ::= "\"" json-time-body "\""
json-date-time ::= "\"" [0-9] [0-9] [0-9] [0-9] "-" ("0" [1-9] | "1" [0-2]) "-" ("0" [1-9] | [12] [0-9] | "3" [01]) "T" json-time-body "\""
hex ::= [0-9a-fA-F]
json-uuid ::= "\"" hex{8} "-" hex{4} "-" hex{4} "-" hex{4} "-" hex{12} "\""
email-atom ::= [a-zA-Z0-9!#$%&'*+/=?^_`{|}~-]+
json-email ::= "\"" email-atom ("." email-atom)* "@" [a-zA-Z0-9] ([a-zA-Z0-9-]* [a-zA-Z0-9])? ("." [a-zA-Z0-9] ([a-zA-Z0-9-]* [a-zA-Z0-9])?)+ "\""
)";

const std::set<std::string> kIgnored = {
    "title",      "description", "default",   "examples", "$schema",     "$id",   "$comment",
    "deprecated", "readOnly",    "writeOnly", "$defs",    "definitions", "strict"};
const std::set<std::string> kKnown = {"type",
                                      "properties",
                                      "required",
                                      "additionalProperties",
                                      "enum",
                                      "const",
                                      "items",
                                      "minItems",
                                      "maxItems",
                                      "anyOf",
                                      "oneOf",
                                      "allOf",
                                      "$ref",
                                      "format",
                                      "minLength",
                                      "maxLength",
                                      "minimum",
                                      "maximum",
                                      "exclusiveMinimum",
                                      "exclusiveMaximum"};

uint64_t P10(int k) {
  uint64_t p = 1;
  while (k-- > 0) p *= 10;
  return p;
}

// GBNF for the decimal integers in [lo, hi] (0 <= lo <= hi), without sign.
std::string UIntRange(uint64_t lo, uint64_t hi) {
  std::vector<uint64_t> stops = {hi};
  for (int k = 1; k < 18; ++k) {
    const uint64_t s = lo / P10(k) * P10(k) + P10(k) - 1;  // lo with k trailing nines
    if (s >= lo && s < hi) stops.push_back(s);
  }
  for (int k = 1; k < 18; ++k) {
    const uint64_t z = (hi + 1) - (hi + 1) % P10(k);  // hi + 1 with k trailing zeros
    if (z >= 1 && z - 1 >= lo && z - 1 < hi) stops.push_back(z - 1);
  }
  std::sort(stops.begin(), stops.end());
  stops.erase(std::unique(stops.begin(), stops.end()), stops.end());
  std::string out;
  uint64_t start = lo;
  for (uint64_t stop : stops) {
    if (stop < start) continue;
    const std::string a = std::to_string(start), b = std::to_string(stop);
    std::string alt;
    if (a.size() != b.size()) {  // cannot happen with the stops above; be safe
      alt = "[0-9]+";
    } else {
      for (size_t i = 0; i < a.size(); ++i) {
        if (!alt.empty()) alt += ' ';
        alt += a[i] == b[i] ? std::string("\"") + a[i] + "\""
                            : std::string("[") + a[i] + "-" + b[i] + "]";
      }
    }
    if (!out.empty()) out += " | ";
    out += "(" + alt + ")";
    start = stop + 1;
  }
  return "(" + out + ")";
}

// Integers >= lo (lo >= 0), without sign: [lo, 10^d - 1] and every longer number.
std::string UIntAtLeast(uint64_t lo) {
  const size_t d = std::to_string(lo).size();
  if (d >= 16) return UIntRange(lo, P10(17) - 1);
  std::string s = "(" + UIntRange(lo, P10(static_cast<int>(d)) - 1);
  s += " | [1-9] [0-9]{" + std::to_string(d) + ",15})";
  return s;
}

class Converter {
 public:
  Converter(const json& root, std::string prefix) : root_(root), prefix_(std::move(prefix)) {}

  // The schema's own rules (start rule PREFIX + "root"), without the common ones.
  Result<std::string> Run() {
    STRATA_ASSIGN_OR_RETURN(std::string e, Visit(root_, "#"));
    std::string out = prefix_ + "root ::= " + e + "\n";
    for (const auto& [name, body] : rules_) out += name + " ::= " + body + "\n";
    return out;
  }

 private:
  const json& root_;
  const std::string prefix_;  // of every rule name (several schemas in one grammar)
  std::map<std::string, std::string> rules_;
  std::map<std::string, std::string> refs_;  // $ref -> rule name
  int n_ = 0;

  std::string NewRule(const std::string& body) {
    std::string name = prefix_ + "s" + std::to_string(n_++);
    rules_[name] = body;
    return name;
  }
  static Status Unsupported(const std::string& path, const std::string& what) {
    return Errorf("unsupported JSON Schema keyword '%s' at %s", what.c_str(), path.c_str());
  }
  static Status Invalid(const std::string& path, const std::string& what) {
    return Errorf("invalid JSON Schema at %s: %s", path.c_str(), what.c_str());
  }

  Result<std::string> Visit(const json& s, const std::string& path) {
    if (s.is_boolean()) {
      if (s.get<bool>()) return std::string("json-value");
      return Invalid(path, "the schema 'false' matches nothing");
    }
    if (!s.is_object()) return Invalid(path, "a schema must be an object or a boolean");
    for (const auto& [k, v] : s.items())
      if (!kKnown.count(k) && !kIgnored.count(k)) return Unsupported(path, k);
    if (auto it = s.find("$ref"); it != s.end()) return Ref(*it, path);
    if (auto it = s.find("const"); it != s.end()) return GbnfLiteral(it->dump());
    if (auto it = s.find("enum"); it != s.end()) {
      if (!it->is_array() || it->empty()) return Invalid(path, "'enum' must be a non-empty array");
      std::string alts;
      for (const json& v : *it) alts += (alts.empty() ? "" : " | ") + GbnfLiteral(v.dump());
      return "(" + alts + ")";
    }
    for (const char* k : {"anyOf", "oneOf"}) {
      if (auto it = s.find(k); it != s.end()) {
        if (!it->is_array() || it->empty())
          return Invalid(path, std::string(k) + " must be a non-empty array");
        std::string alts;
        for (size_t i = 0; i < it->size(); ++i) {
          STRATA_ASSIGN_OR_RETURN(std::string e,
                                  Visit((*it)[i], path + "/" + k + "/" + std::to_string(i)));
          alts += (alts.empty() ? "" : " | ") + e;
        }
        return NewRule(alts);
      }
    }
    if (auto it = s.find("allOf"); it != s.end()) {
      if (!it->is_array() || it->size() != 1)
        return Unsupported(path, "allOf (with more than one schema)");
      return Visit((*it)[0], path + "/allOf/0");
    }
    auto t = s.find("type");
    if (t == s.end()) {
      if (s.contains("properties")) return Object(s, path);
      if (s.contains("items")) return Array(s, path);
      return std::string("json-value");
    }
    if (t->is_string()) return Typed(s, t->get<std::string>(), path);
    if (!t->is_array() || t->empty()) return Invalid(path, "'type' must be a string or an array");
    std::string alts;
    for (const json& ty : *t) {
      if (!ty.is_string()) return Invalid(path, "'type' entries must be strings");
      STRATA_ASSIGN_OR_RETURN(std::string e, Typed(s, ty.get<std::string>(), path));
      alts += (alts.empty() ? "" : " | ") + e;
    }
    return NewRule(alts);
  }

  Result<std::string> Ref(const json& ref, const std::string& path) {
    if (!ref.is_string()) return Invalid(path, "'$ref' must be a string");
    const std::string r = ref.get<std::string>();
    if (auto it = refs_.find(r); it != refs_.end()) return it->second;
    const json* target = nullptr;
    for (const char* prefix : {"#/$defs/", "#/definitions/"}) {
      const std::string p = prefix;
      if (r.rfind(p, 0) != 0) continue;
      const std::string key = p.substr(2, p.size() - 3);
      const std::string name = r.substr(p.size());
      if (root_.contains(key) && root_[key].is_object() && root_[key].contains(name))
        target = &root_[key][name];
    }
    if (r == "#") target = &root_;
    if (!target) return Unsupported(path, "$ref (only #/$defs/NAME and #/definitions/NAME): " + r);
    const std::string name = prefix_ + "ref" + std::to_string(n_++);
    refs_[r] = name;  // before visiting: recursive schemas refer to it
    STRATA_ASSIGN_OR_RETURN(std::string body, Visit(*target, r));
    rules_[name] = body;
    return name;
  }

  Result<std::string> Typed(const json& s, const std::string& type, const std::string& path) {
    if (type == "string") return String(s, path);
    if (type == "integer") return Integer(s, path);
    if (type == "number") return Number(s, path);
    if (type == "boolean") return std::string("json-bool");
    if (type == "null") return std::string("json-null");
    if (type == "object") return Object(s, path);
    if (type == "array") return Array(s, path);
    return Invalid(path, "unknown type '" + type + "'");
  }

  static Result<int64_t> Count(const json& s, const char* key, int64_t dflt,
                               const std::string& path) {
    auto it = s.find(key);
    if (it == s.end()) return dflt;
    if (!it->is_number_integer() || it->get<int64_t>() < 0 || it->get<int64_t>() > 10000)
      return Errorf("invalid JSON Schema at %s: '%s' must be an integer in 0..10000", path.c_str(),
                    key);
    return it->get<int64_t>();
  }

  Result<std::string> String(const json& s, const std::string& path) {
    if (auto f = s.find("format"); f != s.end()) {
      const std::string fmt = f->is_string() ? f->get<std::string>() : "";
      static const std::map<std::string, std::string> kFormats = {{"date", "json-date"},
                                                                  {"date-time", "json-date-time"},
                                                                  {"time", "json-time"},
                                                                  {"uuid", "json-uuid"},
                                                                  {"email", "json-email"}};
      auto it = kFormats.find(fmt);
      if (it == kFormats.end()) return Unsupported(path, "format (value '" + fmt + "')");
      return it->second;
    }
    STRATA_ASSIGN_OR_RETURN(int64_t lo, Count(s, "minLength", 0, path));
    STRATA_ASSIGN_OR_RETURN(int64_t hi, Count(s, "maxLength", -1, path));
    if (lo == 0 && hi < 0) return std::string("json-string");
    if (hi >= 0 && hi < lo) return Invalid(path, "maxLength < minLength");
    const std::string rep =
        hi < 0 ? StrFormat("{%lld,}", static_cast<long long>(lo))
               : StrFormat("{%lld,%lld}", static_cast<long long>(lo), static_cast<long long>(hi));
    return NewRule("\"\\\"\" json-char" + rep + " \"\\\"\"");
  }

  // Reads minimum/maximum (exclusive ones too) as integer bounds; false when absent.
  static Status Bounds(const json& s, const std::string& path, bool integer, bool* has_lo,
                       int64_t* lo, bool* has_hi, int64_t* hi) {
    *has_lo = *has_hi = false;
    for (const char* k : {"minimum", "exclusiveMinimum", "maximum", "exclusiveMaximum"}) {
      auto it = s.find(k);
      if (it == s.end()) continue;
      if (!it->is_number())
        return Errorf("invalid JSON Schema at %s: '%s' must be a number", path.c_str(), k);
      const double v = it->get<double>();
      const bool is_lo = k[0] == 'm' ? k[1] == 'i' : k[9] == 'M' && k[10] == 'i';
      const bool excl = k[0] == 'e';
      if (std::fabs(v) > 1e15) return Unsupported(path, std::string(k) + " (beyond 1e15)");
      double b = is_lo ? std::ceil(v) : std::floor(v);
      if (!integer && b != v)
        return Unsupported(path, std::string(k) + " (a non-integer bound on a number)");
      if (excl && b == v) b += is_lo ? 1 : -1;
      if (!integer && excl) return Unsupported(path, std::string(k) + " (on a number)");
      if (is_lo) {
        *lo = *has_lo ? std::max(*lo, static_cast<int64_t>(b)) : static_cast<int64_t>(b);
        *has_lo = true;
      } else {
        *hi = *has_hi ? std::min(*hi, static_cast<int64_t>(b)) : static_cast<int64_t>(b);
        *has_hi = true;
      }
    }
    if (*has_lo && *has_hi && *lo > *hi)
      return Errorf("invalid JSON Schema at %s: minimum > maximum", path.c_str());
    return Status::Ok();
  }

  // Integers in [lo, hi] (either end open when absent).
  static std::string IntRange(bool has_lo, int64_t lo, bool has_hi, int64_t hi) {
    std::vector<std::string> alts;
    // Non-negative part.
    if (!has_hi || hi >= 0) {
      const uint64_t a = has_lo && lo > 0 ? static_cast<uint64_t>(lo) : 0;
      alts.push_back(has_hi ? UIntRange(a, static_cast<uint64_t>(hi)) : UIntAtLeast(a));
    }
    // Negative part: -y with y in [max(1, -hi), -lo].
    if (!has_lo || lo < 0) {
      const uint64_t c = has_hi && hi < 0 ? static_cast<uint64_t>(-hi) : 1;
      alts.push_back("\"-\" " +
                     (has_lo ? UIntRange(c, static_cast<uint64_t>(-lo)) : UIntAtLeast(c)));
    }
    std::string out;
    for (const std::string& a : alts) out += (out.empty() ? "" : " | ") + a;
    return "(" + out + ")";
  }

  Result<std::string> Integer(const json& s, const std::string& path) {
    bool has_lo, has_hi;
    int64_t lo = 0, hi = 0;
    STRATA_RETURN_IF_ERROR(Bounds(s, path, true, &has_lo, &lo, &has_hi, &hi));
    if (!has_lo && !has_hi) return std::string("json-int");
    return NewRule(IntRange(has_lo, lo, has_hi, hi));
  }

  Result<std::string> Number(const json& s, const std::string& path) {
    bool has_lo, has_hi;
    int64_t lo = 0, hi = 0;
    STRATA_RETURN_IF_ERROR(Bounds(s, path, false, &has_lo, &lo, &has_hi, &hi));
    if (!has_lo && !has_hi) return std::string("json-number");
    // x = integer part with a fraction: within [lo, hi] when the integer part is in
    // [lo, hi - 1] (non-negative) or in [lo + 1, hi] (negative), or exactly an integer.
    const std::string frac = "(\".\" [0-9]{1,16})";
    std::string alts = IntRange(has_lo, lo, has_hi, hi);
    if (!has_hi || hi - 1 >= std::max<int64_t>(has_lo ? lo : 0, 0))
      alts += " | " + UIntRangeOrOpen(std::max<int64_t>(has_lo ? lo : 0, 0), has_hi, hi - 1) + " " +
              frac;
    if (!has_lo || lo + 1 <= std::min<int64_t>(has_hi ? hi : 0, 0)) {
      const int64_t top = has_lo ? -(lo + 1) : 0;  // -y with y in [max(0,-hi), -(lo+1)]
      const int64_t bottom = has_hi && hi < 0 ? -hi : 0;
      alts += " | \"-\" " + UIntRangeOrOpen(bottom, has_lo, top) + " " + frac;
    }
    return NewRule(alts);
  }
  static std::string UIntRangeOrOpen(int64_t lo, bool has_hi, int64_t hi) {
    return has_hi ? UIntRange(static_cast<uint64_t>(lo), static_cast<uint64_t>(hi))
                  : UIntAtLeast(static_cast<uint64_t>(lo));
  }

  Result<std::string> Object(const json& s, const std::string& path) {
    auto props = s.find("properties");
    if (auto ap = s.find("additionalProperties"); ap != s.end()) {
      if (!(ap->is_boolean() && !ap->get<bool>()) && props == s.end() && ap->is_boolean())
        return std::string("json-object");
      if (!(ap->is_boolean() && !ap->get<bool>()))
        return Unsupported(path, "additionalProperties (only false or absent)");
    }
    if (props == s.end()) {
      if (s.contains("required")) return Unsupported(path, "required (without properties)");
      return s.contains("additionalProperties") ? std::string("(\"{\" ws \"}\")")
                                                : std::string("json-object");
    }
    if (!props->is_object()) return Invalid(path, "'properties' must be an object");
    std::set<std::string> required;
    if (auto r = s.find("required"); r != s.end()) {
      if (!r->is_array()) return Invalid(path, "'required' must be an array");
      for (const json& n : *r) {
        if (!n.is_string()) return Invalid(path, "'required' entries must be strings");
        if (!props->contains(n.get<std::string>()))
          return Invalid(path,
                         "required property '" + n.get<std::string>() + "' is not in 'properties'");
        required.insert(n.get<std::string>());
      }
    }
    std::vector<std::string> kv;
    std::vector<bool> req;
    for (const auto& [name, sub] : props->items()) {
      STRATA_ASSIGN_OR_RETURN(std::string e, Visit(sub, path + "/properties/" + name));
      kv.push_back(GbnfLiteral(json(name).dump()) + " ws \":\" ws " + e);
      req.push_back(required.count(name) > 0);
    }
    // rest_i: properties i.. each after a comma; first_i: the first one present has none.
    const size_t n = kv.size();
    std::vector<std::string> rest(n + 1), first(n + 1);
    rest[n] = first[n] = "";
    for (size_t i = n; i-- > 0;) {
      const std::string item = "ws \",\" ws " + kv[i];
      const std::string tail = rest[i + 1].empty() ? "" : " " + rest[i + 1];
      rest[i] = req[i] ? NewRule(item + tail) : NewRule("(" + item + ")?" + tail);
      const std::string ftail = rest[i + 1].empty() ? "" : " " + rest[i + 1];
      if (req[i]) {
        first[i] = NewRule(kv[i] + ftail);
      } else {
        first[i] =
            NewRule(kv[i] + ftail + (first[i + 1].empty() ? " | \"\"" : " | " + first[i + 1]));
      }
    }
    return NewRule("\"{\" ws " + (n == 0 ? std::string() : first[0] + " ws ") + "\"}\"");
  }

  Result<std::string> Array(const json& s, const std::string& path) {
    STRATA_ASSIGN_OR_RETURN(int64_t lo, Count(s, "minItems", 0, path));
    STRATA_ASSIGN_OR_RETURN(int64_t hi, Count(s, "maxItems", -1, path));
    if (hi >= 0 && hi < lo) return Invalid(path, "maxItems < minItems");
    std::string item = "json-value";
    if (auto it = s.find("items"); it != s.end()) {
      if (it->is_array()) return Unsupported(path, "items (as an array: use prefixItems)");
      STRATA_ASSIGN_OR_RETURN(item, Visit(*it, path + "/items"));
    }
    if (hi == 0) return std::string("(\"[\" ws \"]\")");
    const std::string more = "(ws \",\" ws " + item + ")";
    const std::string rep =
        hi < 0 ? StrFormat("{%lld,}", static_cast<long long>(std::max<int64_t>(lo - 1, 0)))
               : StrFormat("{%lld,%lld}", static_cast<long long>(std::max<int64_t>(lo - 1, 0)),
                           static_cast<long long>(hi - 1));
    const std::string body = item + " " + more + rep + " ws";
    return NewRule("\"[\" ws " + (lo == 0 ? "(" + body + ")?" : body) + " \"]\"");
  }
};

}  // namespace

Result<std::string> JsonSchemaToGbnf(const json& schema) {
  STRATA_ASSIGN_OR_RETURN(std::string rules, JsonSchemaRules(schema, ""));
  return rules + kCommonRules;
}

Result<std::string> JsonSchemaRules(const json& schema, const std::string& prefix) {
  Converter c(schema, prefix);
  return c.Run();
}

std::string JsonCommonRules() { return kCommonRules; }

std::string JsonObjectGbnf() { return std::string("root ::= json-object\n") + kCommonRules; }

}  // namespace strata::grammar
