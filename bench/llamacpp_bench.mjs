// llama.cpp side of bench/compare-llamacpp: times prompt processing and generation with the
// prebuilt llama.cpp library of node-llama-cpp (the same binary the conformance oracle uses),
// with the definitions of `strata bench` / llama-bench:
//   ppP: P random tokens (BOS first when the model adds one) evaluated as one batch into an
//        empty sequence; only the last token produces a next-token prediction.
//   tgN: N single-token evaluations from an empty sequence (first input BOS or a random
//        token); each computes the logits and picks the next token greedily (temperature 0).
// One warm-up of each test, then --reps timed repetitions, the sequence cleared before each.
//
// -d D (--n-depth, llama-bench's depth): before each test the sequence already holds D tokens
// (BOS first when the model adds one, then random tokens); ppP then evaluates P more tokens as
// one batch at positions D..D+P-1 and tgN runs N steps at positions D, D+1, ...; tests are
// named "pp512 @ d4096". Exactly what is done: the context is created with contextSize
// D + max(P, N) + 64 and batchSize max(P, 512); the D tokens are evaluated ONCE, untimed, with
// one controlledEvaluate call (node-llama-cpp splits it into batches of batchSize). Before
// every repetition (warm-ups included) sequence.eraseContextTokenRanges([{start: D, end:
// nextTokenIndex}]) removes the tokens after D - llama.cpp drops those KV cells of the
// sequence (llama_memory_seq_rm), nothing is shifted or re-evaluated - and the script checks
// that nextTokenIndex is back to D. With D = 0 the sequence is cleared as before.
//
//   node bench/llamacpp_bench.mjs --model M [-p 512] [-n 128] [-d 0] [--threads N] [--reps R]
// Prints one JSON object: {"pp": {"mean","stddev","median","samples"}, "tg": {...}, ...}.
// The library is looked up in $NODE_LLAMA_CPP_DIR, then tests/conformance/node_modules.
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));

function parseArgs(argv) {
  const a = { model: "", p: 512, n: 128, d: 0, threads: 2, reps: 5, nVocab: 0 };
  for (let i = 0; i < argv.length; i++) {
    const k = argv[i], v = argv[i + 1];
    if (k === "--model" || k === "-m") { a.model = v; i++; }
    else if (k === "-p" || k === "--n-prompt") { a.p = Number(v); i++; }
    else if (k === "-n" || k === "--n-gen") { a.n = Number(v); i++; }
    else if (k === "-d" || k === "--n-depth") { a.d = Number(v); i++; }
    else if (k === "--threads" || k === "-t") { a.threads = Number(v); i++; }
    else if (k === "--reps" || k === "-r") { a.reps = Number(v); i++; }
    else if (k === "--n-vocab") { a.nVocab = Number(v); i++; }
    else throw new Error(`unknown argument ${k}`);
  }
  if (!a.model) throw new Error("usage: llamacpp_bench.mjs --model M [-p P] [-n N] [-d D] [--threads T] [--reps R]");
  if (!Number.isInteger(a.d) || a.d < 0) throw new Error("-d must be an integer >= 0");
  return a;
}

function findLibrary() {
  const candidates = [
    process.env.NODE_LLAMA_CPP_DIR,
    path.join(here, "..", "tests", "conformance", "node_modules", "node-llama-cpp"),
  ].filter(Boolean);
  for (const c of candidates) {
    const f = path.join(c, "dist", "index.js");
    if (fs.existsSync(f)) return pathToFileURL(f).href;
  }
  throw new Error("node-llama-cpp not found (set NODE_LLAMA_CPP_DIR)");
}

function summarize(s) {
  const mean = s.reduce((x, y) => x + y, 0) / s.length;
  const sd = s.length > 1 ? Math.sqrt(s.reduce((x, y) => x + (y - mean) ** 2, 0) / (s.length - 1)) : 0;
  const o = [...s].sort((x, y) => x - y), m = o.length >> 1;
  const median = o.length % 2 ? o[m] : (o[m - 1] + o[m]) / 2;
  return { mean, stddev: sd, median, samples: s };
}

const a = parseArgs(process.argv.slice(2));
const { getLlama } = await import(findLibrary());
const llama = await getLlama({ gpu: false, build: "never", maxThreads: a.threads, logLevel: "error" });
const model = await llama.loadModel({ modelPath: a.model, useMmap: true });
let nVocab = a.nVocab;
if (!nVocab) {
  const toks = model.fileInfo?.metadata?.tokenizer?.ggml?.tokens;
  nVocab = Array.isArray(toks) ? toks.length : 0;
}
if (!nVocab) throw new Error("cannot tell the vocabulary size: pass --n-vocab");
const context = await model.createContext({
  contextSize: a.d + Math.max(a.p, a.n) + 64,
  batchSize: Math.max(a.p, a.d > 0 ? 512 : 1, 1),
  sequences: 1,
  threads: { ideal: a.threads, min: a.threads },
});
const seq = context.getSequence();
const bos = model.tokens.shouldPrependBosToken ? model.tokens.bos : null;

let seed = 1234;
const rand = () => { seed = (seed * 1103515245 + 12345) % 2147483648; return seed % nVocab; };
const greedy = { generateNext: { token: true, options: { temperature: 0 } } };
const depthTag = a.d > 0 ? ` @ d${a.d}` : "";

// Untimed: the depth context, evaluated once (see the header comment).
async function fillDepth(d) {
  await seq.clearHistory();
  if (d === 0) return 0;
  const toks = [];
  for (let i = 0; i < d; i++) toks.push(i === 0 && bos != null ? bos : rand());
  const t0 = process.hrtime.bigint();
  await seq.controlledEvaluate(toks);
  if (seq.nextTokenIndex !== d) throw new Error(`depth fill: sequence holds ${seq.nextTokenIndex} tokens, not ${d}`);
  return Number(process.hrtime.bigint() - t0) / 1e9;
}

// Back to the depth context: drop the tokens after D (no re-evaluation), or clear when D = 0.
async function resetToDepth() {
  if (a.d === 0) { await seq.clearHistory(); return; }
  if (seq.nextTokenIndex > a.d)
    await seq.eraseContextTokenRanges([{ start: a.d, end: seq.nextTokenIndex }]);
  if (seq.nextTokenIndex !== a.d)
    throw new Error(`truncation to depth ${a.d} failed: sequence holds ${seq.nextTokenIndex} tokens`);
}

async function prompt(n) {
  const toks = [];
  for (let i = 0; i < n; i++) toks.push(i === 0 && a.d === 0 && bos != null ? bos : rand());
  const input = toks.map((t, i) => (i === n - 1 ? [t, greedy] : t));
  await resetToDepth();
  const t0 = process.hrtime.bigint();
  await seq.controlledEvaluate(input);
  return Number(process.hrtime.bigint() - t0) / 1e9;
}

async function generate(n) {
  let tok = a.d === 0 && bos != null ? bos : rand();
  await resetToDepth();
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < n; i++) {
    const out = await seq.controlledEvaluate([[tok, greedy]]);
    tok = out[0].next.token;
  }
  return Number(process.hrtime.bigint() - t0) / 1e9;
}

const result = { model: a.model, threads: a.threads, reps: a.reps, n_vocab: nVocab,
                 n_depth: a.d, n_ctx: context.contextSize, flash_attention: context.flashAttention,
                 llama_cpp: "node-llama-cpp prebuilt" };
if (a.d > 0 && (a.p > 0 || a.n > 0)) result.depth_fill_s = await fillDepth(a.d);
if (a.p > 0) {
  await prompt(a.p);  // warm-up
  const s = [];
  for (let r = 0; r < a.reps; r++) s.push(a.p / await prompt(a.p));
  result.pp = { test: `pp${a.p}${depthTag}`, n_tokens: a.p, n_depth: a.d, ...summarize(s) };
}
if (a.n > 0) {
  await generate(1);  // warm-up
  const s = [];
  for (let r = 0; r < a.reps; r++) s.push(a.n / await generate(a.n));
  result.tg = { test: `tg${a.n}${depthTag}`, n_tokens: a.n, n_depth: a.d, ...summarize(s) };
}
console.log(JSON.stringify(result));
await context.dispose();
await model.dispose();
await llama.dispose();
