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
// node-llama-cpp: see node_llama.mjs.
import fs from "node:fs";

import {getCpuLlama} from "./node_llama.mjs";

const [modelPath, textsPath] = process.argv.slice(2);
if (!modelPath || (modelPath === "--jobs" && !textsPath)) {
  console.error("usage: node tokenize_oracle.mjs MODEL.gguf [TEXTS.json] | --jobs JOBS.json");
  process.exit(2);
}
const jobs = modelPath === "--jobs"
  ? JSON.parse(fs.readFileSync(textsPath, "utf8"))
  : [{model: modelPath, texts: JSON.parse(fs.readFileSync(textsPath ?? 0, "utf8"))}];

const llama = await getCpuLlama();
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
