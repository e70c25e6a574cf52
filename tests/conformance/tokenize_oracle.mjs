// Tokenization oracle: runs llama.cpp (through node-llama-cpp) on a vocabulary-only GGUF and
// prints, for each input text, the token ids as JSON.
//
// usage: node tokenize_oracle.mjs MODEL.gguf [TEXTS.json]
//   TEXTS.json: a JSON array of strings (read from stdin when omitted).
//        node tokenize_oracle.mjs --jobs JOBS.json
//   JOBS.json: [{"model", "texts"}, ...]; prints one output array per job (llama.cpp's
//   libraries are loaded once: that takes most of the time).
// output: a JSON array of {"text", "plain", "special", "detok", "detok_special"} where
//   plain     = tokenize(text, specialTokens=false)  (no BOS, special text is plain text)
//   special   = tokenize(text, specialTokens=true)   (special-token text becomes the token)
//   detok     = detokenize(plain)     (llama_detokenize, special tokens hidden)
//   detok_special = detokenize(special, true)
// node-llama-cpp never adds BOS/EOS here (add_special = false), and JavaScript strings are
// always valid UTF-8, so invalid input bytes cannot be checked this way.
// node-llama-cpp is loaded from $NODE_LLAMA_CPP_DIR (the package folder) when set, else from
// tests/conformance/node_modules (scripts/setup.sh installs it there).
import fs from "node:fs";
import path from "node:path";
import {fileURLToPath, pathToFileURL} from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
const pkg = process.env.NODE_LLAMA_CPP_DIR ?? path.join(here, "node_modules", "node-llama-cpp");
const {getLlama} = await import(pathToFileURL(path.join(pkg, "dist", "index.js")).href);

const [modelPath, textsPath] = process.argv.slice(2);
if (!modelPath || (modelPath === "--jobs" && !textsPath)) {
  console.error("usage: node tokenize_oracle.mjs MODEL.gguf [TEXTS.json] | --jobs JOBS.json");
  process.exit(2);
}
const jobs = modelPath === "--jobs"
  ? JSON.parse(fs.readFileSync(textsPath, "utf8"))
  : [{model: modelPath, texts: JSON.parse(fs.readFileSync(textsPath ?? 0, "utf8"))}];

const llama = await getLlama({gpu: false, build: "never", logLevel: "error"});
const outs = [];
for (const job of jobs) {
  const model = await llama.loadModel({modelPath: job.model, vocabOnly: true});
  const out = [];
  for (const text of job.texts) {
    const plain = Array.from(model.tokenize(text, false));
    const special = Array.from(model.tokenize(text, true));
    out.push({text, plain, special, detok: model.detokenize(plain),
              detok_special: model.detokenize(special, true)});
  }
  outs.push(out);
  await model.dispose();
}
process.stdout.write(JSON.stringify(modelPath === "--jobs" ? outs : outs[0]) + "\n");
await llama.dispose();
