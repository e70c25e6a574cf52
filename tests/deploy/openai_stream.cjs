// Streams one chat answer through a Strata gateway with the official `openai` npm client.
//   NODE_PATH=.../node_modules node openai_stream.cjs BASE_URL MAX_TOKENS [MARK_AFTER] [MODE]
// Prints "MARK" once MARK_AFTER chunks with text have arrived (the caller acts mid-stream),
// then one JSON line: {ids, chunks, finish, usage, error}. MODE "once": no streaming.
// The model id: $STRATA_CLIENT_MODEL (default model.gguf, the GGUF's file name).
// Exit 0 when the answer completed (a finish_reason, no error).
'use strict';
const OpenAI = require('openai');

async function main() {
  const [baseURL, maxTokens, markAfter = '0', mode = 'stream'] = process.argv.slice(2);
  const client = new OpenAI({ baseURL, apiKey: process.env.STRATA_CLIENT_KEY || 'unused',
                              maxRetries: 0, timeout: 180000 });
  const body = {
    model: process.env.STRATA_CLIENT_MODEL || 'model.gguf',
    messages: [{ role: 'user', content: 'Tell me a long story about a lighthouse keeper.' }],
    max_tokens: Number(maxTokens),
    temperature: 0,
  };
  const out = { ids: [], chunks: 0, finish: null, usage: null, error: null };
  if (mode === 'once') {
    const r = await client.chat.completions.create(body);
    out.ids = [r.id];
    const m = r.choices[0].message;  // text length (an R1 model starts with reasoning)
    out.chunks = (m.content || '').length + (m.reasoning_content || '').length;
    out.finish = r.choices[0].finish_reason;
    out.usage = r.usage;
  } else {
    const stream = await client.chat.completions.create(
      { ...body, stream: true, stream_options: { include_usage: true } });
    const ids = new Set();
    for await (const c of stream) {
      ids.add(c.id);
      const ch = c.choices && c.choices[0];
      if (ch && ch.delta && (ch.delta.content || ch.delta.reasoning_content)) {
        out.chunks += 1;
        if (out.chunks === Number(markAfter)) console.log('MARK');
      }
      if (ch && ch.finish_reason) out.finish = ch.finish_reason;
      if (c.usage) out.usage = c.usage;
    }
    out.ids = [...ids];
  }
  console.log(JSON.stringify(out));
  return out.finish ? 0 : 1;
}

main().then((rc) => process.exit(rc), (e) => {
  console.log(JSON.stringify({ error: String(e && e.message ? e.message : e) }));
  process.exit(1);
});
