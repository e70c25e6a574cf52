// Validates every object of multi-document YAML files against the Kubernetes OpenAPI schemas
// shipped by the npm package `kubernetes-models` (JSON schema, checked with ajv).
// Usage: K8S_VALIDATE_MODULES=<node_modules dir> node k8s_validate.mjs FILE... ; exit 1 on any
// error. With K8S_JSON_OUT=DIR, also writes each FILE's objects as DIR/<basename>.json.
import { createRequire } from "node:module";
import { readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { pathToFileURL } from "node:url";

const require = createRequire(path.join(process.env.K8S_VALIDATE_MODULES, "x.js"));
const YAML = require("yaml");

let failed = 0;
for (const file of process.argv.slice(2)) {
  const objects = YAML.parseAllDocuments(readFileSync(file, "utf8")).map((d) => d.toJS());
  if (process.env.K8S_JSON_OUT)
    writeFileSync(path.join(process.env.K8S_JSON_OUT, path.basename(file) + ".json"),
                  JSON.stringify(objects.filter((o) => o)));
  for (const obj of objects) {
    if (!obj) continue;
    const where = `${file}: ${obj.apiVersion} ${obj.kind} ${obj.metadata?.name}`;
    let Model;
    try {
      const dir = path.join(process.env.K8S_VALIDATE_MODULES, "kubernetes-models", obj.apiVersion);
      Model = (await import(pathToFileURL(path.join(dir, "index.js")).href))[obj.kind];
    } catch (e) {
      Model = undefined;
    }
    if (!Model) {
      console.log(`FAIL ${where}: no schema for this apiVersion/kind`);
      failed++;
      continue;
    }
    try {
      new Model(obj).validate();
      console.log(`ok   ${where}`);
    } catch (e) {
      console.log(`FAIL ${where}: ${e.message}`);
      failed++;
    }
  }
}
process.exit(failed ? 1 : 0);
