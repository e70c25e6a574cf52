// Streams one chat request with the official `openai` npm client and prints what it parsed:
// {tool_calls (accumulated from the deltas by index), content, finish}.
//   NODE_PATH=.../node_modules node openai_tools.cjs BASE_URL BODY_JSON
'use strict';
const OpenAI = require('openai');

async function main() {
  const [baseURL, bodyJson] = process.argv.slice(2);
  const client = new OpenAI({ baseURL, apiKey: 'unused', maxRetries: 0, timeout: 60000 });
  const body = JSON.parse(bodyJson);
  // The SDK's own accumulation of streamed tool-call deltas.
  const runner = client.chat.completions.stream({ ...body, stream: true });
  const final = await runner.finalChatCompletion();
  const msg = final.choices[0].message;
  console.log(JSON.stringify({ tool_calls: msg.tool_calls || [], content: msg.content,
                               finish: final.choices[0].finish_reason }));
}

main().catch((e) => {
  console.log(JSON.stringify({ error: String(e && e.message ? e.message : e) }));
  process.exit(1);
});
