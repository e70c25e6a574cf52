// Conformance with llama.cpp (the node-llama-cpp build): for tiny synthesized qwen2 and llama
// models in several weight types, Strata must produce the same prompt token ids and the same
// greedy continuation as llama.cpp on the same GGUF file.
//
//   node conformance.mjs --strata BUILD/strata --workdir DIR [--types f32,f16,q8_0]
//                        [--archs qwen2,llama] [--n-predict 32]
//                        [--shape-suffix -k] [--synth-args "--layers 3"]
// --shape-suffix picks the named synth shape tiny-<arch><suffix> (e.g. "-k": hidden 256 and
// FFN 512, row lengths that the 256-element K-quant blocks need); --synth-args appends
// space-separated arguments to `strata model synth`. Both default to nothing.
// --quantize Q8_0,Q4_0,Q4_K_M,... : quantize mode. Each synthesized model (--types are then the
// source types, e.g. f16) is converted with `strata quantize` to each listed type, and the
// checks run on the quantized files. With --compare-llama-quantize 1, llama.cpp's own
// quantizer (llama_model_quantize, through llama_quantize.py) also quantizes the source and the
// two files must have the same tensors, types and bytes.
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
const args = Object.fromEntries(
  process.argv.slice(2).reduce((acc, a, i, all) => {
    if (a.startsWith("--")) acc.push([a.slice(2), all[i + 1]]);
    return acc;
  }, []));
const strata = args.strata;
const workdir = args.workdir ?? fs.mkdtempSync("/tmp/strata-conf-");
const types = (args.types ?? "f32,f16,q8_0").split(",");
const archs = (args.archs ?? "qwen2,llama").split(",");
const nPredict = Number(args["n-predict"] ?? 32);
const shapeSuffix = args["shape-suffix"] ?? "";
const synthArgs = (args["synth-args"] ?? "").split(" ").filter((a) => a.length > 0);
const quantTypes = (args.quantize ?? "").split(",").filter((a) => a.length > 0);
const compareLlamaQuantize = (args["compare-llama-quantize"] ?? "0") === "1";
fs.mkdirSync(workdir, { recursive: true });

const prompts = [
  "The quick brown fox jumps over the lazy dog.",
  "请用中文解释一下量子计算的基本原理。",
  "Emoji test: 🦙🚀✨ 👩‍💻 and flags 🇫🇷🇯🇵!",
  "def fib(n):\n    return n if n < 2 else fib(n - 1) + fib(n - 2)\n",
  "   leading spaces,\t\ttabs,\n\n\nnewlines   and    runs      of whitespace   ",
  "Numbers 1234567890 3.14159 and mixed Ünïcödé ß Ωμέγα Привет",
  // Over 64 tokens: both engines then evaluate the prompt with their tiled attention order.
  "A long prompt, so that the prompt batch holds more than sixty-four tokens: the river " +
    "winds through the valley past the old mill, the stone bridge and the orchard, where " +
    "apples, pears and plums ripen in late summer. Farmers bring their carts to the market " +
    "square on Saturdays; children chase pigeons between the stalls, and the baker sells " +
    "bread, pretzels and cinnamon rolls until noon. In the evening the bells ring twice, " +
    "lanterns are lit along the quay, and boats return with nets full of silver fish.",
];

function run(cmd, argv, opts = {}) {
  return execFileSync(cmd, argv, { encoding: "utf8", maxBuffer: 1 << 28, ...opts });
}

let failures = 0, checks = 0;
function check(ok, what) {
  checks++;
  if (!ok) { failures++; console.log(`FAIL ${what}`); }
}

// The models to check: synthesized ones, or (--quantize) their quantized conversions.
function* models(arch, type) {
  const synth = path.join(workdir, `tiny-${arch}${shapeSuffix}-${type}.gguf`);
  run(strata, ["model", "synth", "--shape", `tiny-${arch}${shapeSuffix}`, "--type", type,
               "--seed", "42", "--out", synth, ...synthArgs]);
  if (quantTypes.length === 0) {
    yield [synth, type];
    return;
  }
  for (const qt of quantTypes) {
    const out = path.join(workdir, `tiny-${arch}${shapeSuffix}-${type}-${qt}.gguf`);
    run(strata, ["quantize", synth, out, qt, "--threads", "2", "--quiet"]);
    if (compareLlamaQuantize) {
      const ref = path.join(workdir, `tiny-${arch}${shapeSuffix}-${type}-${qt}-llama.gguf`);
      let ok = true, report = "";
      try {
        report = run("python3", [path.join(here, "llama_quantize.py"), "--in", synth, "--out", ref,
                                 "--type", qt, "--compare", out], { stdio: ["ignore", "pipe", "ignore"] });
      } catch (e) {
        ok = false;
        report = String(e.stdout ?? e.message);
      }
      check(ok, `${arch}/${type}->${qt}: strata quantize differs from llama_model_quantize\n${report}`);
      console.log(`${arch}/${type}->${qt}: ${report.trim().split("\n").pop()}`);
      fs.rmSync(ref, { force: true });
    }
    yield [out, `${type}->${qt}`];
  }
}

const jobs = archs.flatMap((arch) => types.map((t) => [arch, t]));
for (const [arch, srcType] of jobs) {
  for (const [model, type] of models(arch, srcType)) {
    const promptsFile = path.join(workdir, "prompts.json");
    fs.writeFileSync(promptsFile, JSON.stringify(prompts));
    const oracle = JSON.parse(run("node", [path.join(here, "oracle.mjs"), "--model", model,
      "--prompts", promptsFile, "--n-predict", String(nPredict), "--ctx", "512"]));
    oracle.results.forEach((want, i) => {
      const got = JSON.parse(run(strata, ["run", "--model", model, "--prompt", prompts[i],
        "--max-tokens", String(nPredict), "--temperature", "0", "--threads", "2",
        "--ctx", "512", "--json"]));
      const label = `${arch}/${type} prompt ${i}`;
      check(JSON.stringify(got.prompt_tokens) === JSON.stringify(want.tokens),
            `${label}: prompt tokens\n  strata: ${JSON.stringify(got.prompt_tokens)}\n  llama.cpp: ${JSON.stringify(want.tokens)}`);
      // Strata includes the end-of-generation token it stopped at; llama.cpp's list may too.
      const n = Math.min(got.tokens.length, want.continuation.length);
      const a = got.tokens.slice(0, n), b = want.continuation.slice(0, n);
      check(JSON.stringify(a) === JSON.stringify(b),
            `${label}: greedy continuation\n  strata:    ${JSON.stringify(got.tokens)}\n  llama.cpp: ${JSON.stringify(want.continuation)}`);
      if (want.stop === "eog")
        check(got.tokens[n] === want.eog_token && got.stop_reason === "eog",
              `${label}: llama.cpp stopped at end-of-generation token ${want.eog_token}, strata did not`);
      check(n >= Math.min(nPredict, want.continuation.length) && n > 0,
            `${label}: continuation length strata ${got.tokens.length} vs llama.cpp ${want.continuation.length}`);
    });
    console.log(`${arch}/${type}: ${prompts.length} prompts checked`);
  }
}
console.log(`conformance: ${checks - failures} passed, ${failures} failed`);
process.exit(failures ? 1 : 0);
