#!/usr/bin/env node
// llama.cpp's perplexity of a text, via node-llama-cpp (CPU only), for the perplexity
// conformance test (perplexity_test.py). It follows llama-perplexity's method: the text is
// tokenized (specialTokens=false, BOS prepended when the model says shouldPrependBosToken),
// cut into chunks of --ctx tokens, each chunk evaluated in a cleared sequence with its first
// token replaced by BOS (when the model adds one), and the tokens ctx/2+1 .. ctx-1 of each
// chunk scored with the log-softmax of all the raw logits (summed here in double precision).
//
//   node perplexity_oracle.mjs --model M.gguf --file TEXT [--ctx 128] [--batch B] [--chunks N]
//                               [--threads 2]
//
// --batch B: tokens per decode call (default: the whole chunk at once).
// Prints one JSON object: {"n_tokens": n, "chunks": [running PPL after each chunk], "ppl": p,
// "err": e (llama-perplexity's +/- figure), "count": scored tokens}.
import {readFileSync} from "node:fs";

import {getCpuLlama, runOracle} from "./node_llama.mjs";

function parseArgs(argv) {
  const o = {ctx: 128, batch: 0, chunks: -1, threads: 2};
  for (let i = 0; i < argv.length; i += 2) {
    const [k, v] = [argv[i], argv[i + 1]];
    if (v === undefined) throw new Error(`${k} needs a value`);
    if (k === "--model") o.model = v;
    else if (k === "--file") o.file = v;
    else if (k === "--ctx") o.ctx = Number(v);
    else if (k === "--batch") o.batch = Number(v);
    else if (k === "--chunks") o.chunks = Number(v);
    else if (k === "--threads") o.threads = Number(v);
    else throw new Error(`unknown argument '${k}'`);
  }
  if (!o.model || !o.file) throw new Error("--model and --file are required");
  return o;
}

// -log p(token) from a Map of every token's raw logit.
function nll(logits, token) {
  let max = -Infinity;
  for (const l of logits.values()) max = Math.max(max, l);
  let sum = 0;
  for (const l of logits.values()) sum += Math.exp(l - max);
  return Math.log(sum) - (logits.get(token) - max);
}

// Adds the NLL of chunk[first+1 .. n-1] (logits after positions first .. n-2) to acc.
async function scoreChunk(sequence, chunk, bos, acc) {
  const n = chunk.length;
  const first = Math.floor(n / 2);
  const input = chunk.map((t, i) => {
    const tok = i === 0 && bos != null ? bos : t;
    return i >= first && i < n - 1 ? [tok, {generateNext: {logits: true}}] : tok;
  });
  await sequence.clearHistory();
  const out = await sequence.controlledEvaluate(input);
  for (let i = first; i < n - 1; ++i) {
    const v = nll(out[i].next.logits, chunk[i + 1]);
    acc.nll += v;
    acc.nll2 += v * v;
    acc.count += 1;
  }
}

async function main() {
  const o = parseArgs(process.argv.slice(2));
  const llama = await getCpuLlama();
  const model = await llama.loadModel({modelPath: o.model, gpuLayers: 0});
  const context = await model.createContext({
    contextSize: o.ctx, batchSize: o.batch > 0 ? Math.min(o.batch, o.ctx) : o.ctx, threads: o.threads, sequences: 1,
  });
  const sequence = context.getSequence();
  const bos = model.tokens.bos ?? null;
  const addBos = Boolean(model.tokens.shouldPrependBosToken) && bos != null;
  const tokens = Array.from(model.tokenize(readFileSync(o.file, "utf8"), false));
  if (addBos) tokens.unshift(bos);
  const nMax = Math.floor(tokens.length / o.ctx);
  const nChunk = o.chunks < 0 ? nMax : Math.min(o.chunks, nMax);
  const acc = {nll: 0, nll2: 0, count: 0};
  const chunks = [];
  for (let c = 0; c < nChunk; ++c) {
    await scoreChunk(sequence, tokens.slice(c * o.ctx, (c + 1) * o.ctx), addBos ? bos : null, acc);
    chunks.push(Math.exp(acc.nll / acc.count));
  }
  const mean = acc.nll / acc.count;
  const variance = acc.nll2 / acc.count - mean * mean;
  const ppl = Math.exp(mean);
  const err = variance > 0 ? Math.sqrt(variance / (acc.count - 1)) * ppl : null;
  process.stdout.write(JSON.stringify({n_tokens: tokens.length, chunks, ppl, err,
                                       count: acc.count}) + "\n");
  await context.dispose();
  await model.dispose();
  await llama.dispose();
}

runOracle("perplexity_oracle", main);
