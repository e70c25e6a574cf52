#!/usr/bin/env bash
# Peak resident memory of `strata run` on an r1-qwen-1.5b-shaped Q8_0 model, against what the
# run must touch: the mapped weights (all but the token embedding, of which only the rows of
# the tokens used are read) plus the KV cache positions written.
#
#   bench/memory.sh [STRATA_BIN] [MODEL]     (synthesizes the model when MODEL is missing)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
STRATA="${1:-$ROOT/build/strata}"
MODEL="${2:-$ROOT/build/r1-qwen-1.5b-q8_0.gguf}"
[ -f "$MODEL" ] || "$STRATA" model synth --shape r1-qwen-1.5b --type q8_0 --seed 1 --out "$MODEL"
EMBD=$("$STRATA" inspect "$MODEL" --json | python3 -c 'import json,sys; t=[x for x in json.load(sys.stdin)["tensors"] if x["name"]=="token_embd.weight"][0]; print(t["bytes"])')
"$STRATA" run --model "$MODEL" --prompt "Explain why the sky is blue in one paragraph." --chat \
  --max-tokens 32 --temperature 0 --ctx 4096 --json |
python3 -c '
import json, sys
j = json.load(sys.stdin); m = j["memory"]; embd = int(sys.argv[1])
wb, kr, ku, pk = m["weights_bytes"], m["kv_cache_reserved_bytes"], m["kv_cache_used_bytes"], m["peak_rss_bytes"]
rows = len(set(j["prompt_tokens"] + j["tokens"]))
row = embd / 151936
touched = wb - embd + rows * row
mib = lambda b: b / 2**20
print(f"weights mapped:        {mib(wb):9.1f} MiB (token embedding {mib(embd):.1f} MiB, {rows} rows read)")
print(f"weights touched:       {mib(touched):9.1f} MiB")
print(f"KV cache reserved:     {mib(kr):9.1f} MiB (virtual; --ctx 4096)")
print(f"KV cache written:      {mib(ku):9.1f} MiB")
print(f"peak RSS:              {mib(pk):9.1f} MiB")
print(f"overhead over touched: {mib(pk - touched - ku):9.1f} MiB")
' "$EMBD"
