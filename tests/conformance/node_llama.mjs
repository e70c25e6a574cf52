// node-llama-cpp for the llama.cpp oracles of the conformance tests (oracle.mjs,
// perplexity_oracle.mjs, tokenize_oracle.mjs): loaded from $NODE_LLAMA_CPP_DIR (the package
// folder of an install elsewhere) when set, else from tests/conformance/node_modules
// (scripts/setup.sh runs npm install there).
import {existsSync} from "node:fs";
import {dirname, join} from "node:path";
import {fileURLToPath, pathToFileURL} from "node:url";

const here = dirname(fileURLToPath(import.meta.url));

// The node-llama-cpp module.
export async function loadNodeLlamaCpp() {
  const candidates = [
    process.env.NODE_LLAMA_CPP_DIR && join(process.env.NODE_LLAMA_CPP_DIR, "dist", "index.js"),
    join(here, "node_modules", "node-llama-cpp", "dist", "index.js"),
  ].filter(Boolean);
  for (const c of candidates) {
    if (existsSync(c)) return import(pathToFileURL(c).href);
  }
  throw new Error("node-llama-cpp not found; run `npm install` in " + here +
                  " (scripts/setup.sh does this) or set NODE_LLAMA_CPP_DIR");
}

// llama.cpp on the CPU only (never built here), logging errors only.
export async function getCpuLlama() {
  const {getLlama, LlamaLogLevel} = await loadNodeLlamaCpp();
  return getLlama({gpu: false, build: "never", logLevel: LlamaLogLevel.error});
}

// Runs an oracle's async main: an error is printed after the oracle's name, exit status 1.
export function runOracle(name, main) {
  main().catch((e) => {
    process.stderr.write(`${name}: ${e?.stack ?? e}\n`);
    process.exit(1);
  });
}
