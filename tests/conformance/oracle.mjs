#!/usr/bin/env node
// llama.cpp reference outputs for Strata's conformance tests, via node-llama-cpp (CPU only).
//
//   node oracle.mjs --model M.gguf --prompts prompts.json [--n-predict 32] [--threads 1]
//                   [--ctx 512] [--logits [--top-k 5] [--logprobs] [--stride S]]
//
// prompts.json is a JSON array of strings. Prints one JSON object on stdout:
//   {"bos": id|null, "add_bos": bool, "eog": [all EOG token ids], "results": [
//     {"prompt": s,
//      "tokens": [...],        // tokenize(prompt, specialTokens=false), BOS prepended when the
//                              // model says shouldPrependBosToken
//      "continuation": [...],  // greedy (temperature 0) next tokens, at most n-predict, the
//                              // end-of-generation token excluded
//      "stop": "eog"|"length", // why the continuation ended
//      "eog_token": id|null,   // the EOG token that ended it ("stop" == "eog")
//      // with --logits: teacher-forced greedy prediction after each prompt position
//      "top1": [...],          // top1[i] = argmax of the logits after tokens[0..i]
//      "top_logits": [[[id, logit], ...], ...],  // top-k (id, raw logit) per position
//      // with --logprobs too: the same top-k as log-probabilities (log-softmax of all the raw
//      // logits, summed here in double precision)
//      "top_logprobs": [[[id, logprob], ...], ...]}
// --stride S: logits only after the last token and every S-th one before it (null elsewhere).
//   ]}
// Each prompt runs in a fresh context sequence state (the sequence is cleared in between).
// Diagnostics go to stderr; exit status 2 on usage errors, 1 on runtime errors.
import {existsSync, readFileSync} from "node:fs";

import {getCpuLlama, runOracle} from "./node_llama.mjs";

function usage(msg) {
  if (msg) process.stderr.write(`oracle: ${msg}\n`);
  process.stderr.write(
      "usage: node oracle.mjs --model M.gguf --prompts prompts.json [--n-predict 32] " +
      "[--threads 1] [--ctx 512] [--logits [--top-k 5] [--logprobs] [--stride S]]\n");
  process.exit(2);
}

function parseArgs(argv) {
  const opts = {nPredict: 32, threads: 1, ctx: 512, logits: false, topK: 5, logprobs: false,
                stride: 1};
  const intArg = (name, v) => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < 0) usage(`${name} needs a non-negative integer, got '${v}'`);
    return n;
  };
  for (let i = 0; i < argv.length; ++i) {
    const a = argv[i];
    const next = () => {
      if (i + 1 >= argv.length) usage(`${a} needs a value`);
      return argv[++i];
    };
    switch (a) {
      case "--model": opts.model = next(); break;
      case "--prompts": opts.prompts = next(); break;
      case "--n-predict": opts.nPredict = intArg(a, next()); break;
      case "--threads": opts.threads = Math.max(1, intArg(a, next())); break;
      case "--ctx": opts.ctx = Math.max(16, intArg(a, next())); break;
      case "--logits": opts.logits = true; break;
      case "--logprobs": opts.logprobs = true; break;
      case "--stride": opts.stride = Math.max(1, intArg(a, next())); break;
      case "--top-k": opts.topK = intArg(a, next()); break;
      case "-h": case "--help": usage(); break;
      default: usage(`unknown argument '${a}'`);
    }
  }
  if (!opts.model) usage("--model is required");
  if (!opts.prompts) usage("--prompts is required");
  return opts;
}

function readPrompts(path) {
  let prompts;
  try {
    prompts = JSON.parse(readFileSync(path, "utf8"));
  } catch (e) {
    usage(`cannot read prompts '${path}': ${e.message}`);
  }
  if (!Array.isArray(prompts) || !prompts.every((p) => typeof p === "string"))
    usage(`'${path}' must hold a JSON array of strings`);
  return prompts;
}

async function greedyContinuation(model, sequence, tokens, nPredict) {
  const continuation = [];
  let stop = "length";
  let eogToken = null;
  if (nPredict === 0 || tokens.length === 0) return {continuation, stop, eogToken};
  const it = sequence.evaluate(tokens, {temperature: 0, yieldEogToken: true});
  for await (const token of it) {
    if (model.isEogToken(token)) {
      stop = "eog";
      eogToken = token;
      break;
    }
    continuation.push(token);
    if (continuation.length >= nPredict) break;
  }
  await it.return?.();
  return {continuation, stop, eogToken};
}

// Teacher forcing: one batch over the prompt, asking for the argmax (temperature 0) and the
// top-k raw logits after every position (with logprobs, all the logits: node-llama-cpp's
// totalLogitWeight is summed in single precision, off by ~1e-3 over a 151,936-token vocabulary).
async function teacherForced(sequence, tokens, topK, logprobs, stride) {
  const wanted = (i) => (tokens.length - 1 - i) % stride === 0;
  const input = tokens.map((t, i) => !wanted(i) ? t : [t, {
    generateNext: {
      token: true,
      options: {temperature: 0},
      ...(topK > 0 ? {logits: logprobs ? true : {filter: {tokens: [], includeTop: topK}}} : {}),
    },
  }]);
  const out = await sequence.controlledEvaluate(input);
  const top1 = [];
  const topLogits = [];
  const topLogprobs = [];
  for (let i = 0; i < tokens.length; ++i) {
    const next = out[i]?.next;
    if (!wanted(i)) {
      top1.push(null);
      if (topK > 0) topLogits.push(null);
      if (topK > 0 && logprobs) topLogprobs.push(null);
      continue;
    }
    top1.push(next?.token ?? null);
    if (topK > 0) {
      const pairs = next?.logits ? [...next.logits.entries()] : [];
      pairs.sort((a, b) => b[1] - a[1] || a[0] - b[0]);
      topLogits.push(pairs.slice(0, topK));
      if (logprobs && pairs.length > 0) {
        // log-softmax: logit - (max + log(sum exp(logit - max)))
        let sum = 0;
        for (const [, l] of pairs) sum += Math.exp(l - pairs[0][1]);
        const logZ = pairs[0][1] + Math.log(sum);
        topLogprobs.push(pairs.slice(0, topK).map(([id, l]) => [id, l - logZ]));
      }
    }
  }
  return {top1, topLogits, topLogprobs};
}

async function main() {
  const opts = parseArgs(process.argv.slice(2));
  if (!existsSync(opts.model)) usage(`model '${opts.model}' not found`);
  const prompts = readPrompts(opts.prompts);
  const t0 = Date.now();
  const llama = await getCpuLlama();
  const model = await llama.loadModel({modelPath: opts.model, gpuLayers: 0});
  const context = await model.createContext({
    contextSize: opts.ctx, threads: opts.threads, batchSize: opts.ctx, sequences: 1,
  });
  const sequence = context.getSequence();
  const tLoaded = Date.now();

  const bos = model.tokens.bos ?? null;
  const addBos = Boolean(model.tokens.shouldPrependBosToken) && bos != null;
  // Every end-of-generation token llama.cpp recognizes (EOS, EOT, EOM, ...).
  const eog = [];
  for (const t of model.iterateAllTokens()) if (model.isEogToken(t)) eog.push(t);

  const results = [];
  for (const prompt of prompts) {
    const tokens = Array.from(model.tokenize(prompt, false));
    if (addBos) tokens.unshift(bos);
    if (tokens.length + opts.nPredict > opts.ctx)
      throw new Error(`prompt of ${tokens.length} tokens + ${opts.nPredict} predicted ` +
                      `exceeds --ctx ${opts.ctx}`);
    const r = {prompt, tokens};
    await sequence.clearHistory();
    const g = await greedyContinuation(model, sequence, tokens, opts.nPredict);
    r.continuation = g.continuation;
    r.stop = g.stop;
    r.eog_token = g.eogToken;
    if (opts.logits && tokens.length > 0) {
      await sequence.clearHistory();
      const tf = await teacherForced(sequence, tokens, opts.topK, opts.logprobs, opts.stride);
      r.top1 = tf.top1;
      if (opts.topK > 0) r.top_logits = tf.topLogits;
      if (opts.topK > 0 && opts.logprobs) r.top_logprobs = tf.topLogprobs;
    }
    results.push(r);
  }
  const tDone = Date.now();
  process.stdout.write(JSON.stringify({bos, add_bos: addBos, eog, results}) + "\n");
  process.stderr.write(`oracle: load ${tLoaded - t0} ms, run ${tDone - tLoaded} ms, ` +
                       `${prompts.length} prompts\n`);
  await context.dispose();
  await model.dispose();
  await llama.dispose();
}

runOracle("oracle", main);
