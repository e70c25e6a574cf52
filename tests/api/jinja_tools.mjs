// The tool cases of tests/data/templates/golden.json (rendered by Python's jinja2, which
// chat_template_test checks Strata's C++ rendering against) rendered again by
// @huggingface/jinja, the engine the chat conformance test uses: both Jinja engines must agree,
// so Strata's prompt with tools, tool calls and tool results equals the checkpoint templates'.
//   NODE_PATH=.../node_modules node jinja_tools.mjs [--dump FILE]
// --dump FILE: also writes the renderings, [{template, name, add_generation_prompt, text}], for
// the check that tokenizes them with llama.cpp (jinja_tools.py).
import { createRequire } from 'node:module';
import { readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const require = createRequire(import.meta.url);
const { Template } = require('@huggingface/jinja');
const dir = join(dirname(fileURLToPath(import.meta.url)), '..', 'data', 'templates');
const golden = JSON.parse(readFileSync(join(dir, 'golden.json'), 'utf8'));

// As render_golden.py: the Qwen and Llama templates print arguments with tojson (objects).
function jinjaMessages(file, messages) {
  if (file.startsWith('deepseek')) return messages;
  return messages.map((m) => (m.tool_calls ? {
    ...m,
    tool_calls: m.tool_calls.map((c) => ({
      ...c, function: { ...c.function, arguments: JSON.parse(c.function.arguments) } })),
  } : m));
}

let checked = 0;
const fails = [];
const dumped = [];
for (const c of golden.cases) {
  if (!c.tools || c.expected === null) continue;
  const t = new Template(readFileSync(join(dir, c.template), 'utf8'));
  let got;
  try {
    got = t.render({ messages: jinjaMessages(c.template, c.messages), tools: c.tools,
                     add_generation_prompt: c.add_generation_prompt, bos_token: c.bos_token,
                     eos_token: '</s>' });
  } catch (e) {
    got = `error: ${e.message}`;
  }
  checked += 1;
  dumped.push({ template: c.template, name: c.name,
                add_generation_prompt: c.add_generation_prompt, text: got });
  if (got !== c.expected) fails.push(`${c.template} / ${c.name}${c.add_generation_prompt ? ' +gen' : ''}`);
}
const dumpAt = process.argv.indexOf('--dump');
if (dumpAt > 0) writeFileSync(process.argv[dumpAt + 1], JSON.stringify(dumped));
for (const f of fails) console.log(`FAIL ${f}`);
console.log(`${checked} tool cases rendered by @huggingface/jinja, ${fails.length} differ from jinja2`);
process.exit(fails.length || checked < 20 ? 1 : 0);
