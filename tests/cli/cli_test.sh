#!/usr/bin/env bash
# shellcheck disable=SC2015  # `check && ok || bad "..."` throughout: ok cannot fail
# End-to-end checks of the strata binary: the CLI contract and bad input (clear message,
# non-zero exit, no crash). Usage: cli_test.sh path/to/strata
set -u
STRATA=${1:?usage: cli_test.sh path/to/strata}
DATA=$(cd "$(dirname "$0")/../data" && pwd)
W=$(mktemp -d /tmp/strata-cli-XXXXXX)
trap 'rm -rf "$W"' EXIT
pass=0; fail=0
ok()   { pass=$((pass+1)); }
bad()  { fail=$((fail+1)); echo "FAIL: $*"; }

# expect_fail NAME PATTERN CMD... : non-zero exit (not a signal) and stderr matching PATTERN
expect_fail() {
  local name=$1 pat=$2; shift 2
  "$@" >"$W/out" 2>"$W/err"; local rc=$?
  if [ $rc -eq 0 ]; then bad "$name: exit 0"; return; fi
  if [ $rc -ge 128 ]; then bad "$name: killed by signal $((rc-128))"; cat "$W/err"; return; fi
  if ! grep -qE -e "$pat" "$W/err"; then bad "$name: stderr lacks /$pat/:"; cat "$W/err"; return; fi
  ok
}

M="$W/tiny.gguf"
"$STRATA" model synth --shape tiny-qwen2 --type q8_0 --seed 3 --out "$M" 2>/dev/null || { echo "synth failed"; exit 1; }

# run --json: the contract's fields, greedy determinism
out=$("$STRATA" run --model "$M" --prompt "Hello world" --max-tokens 8 --temperature 0 --json --ctx 256)
if echo "$out" | python3 -c '
import json,sys
j=json.load(sys.stdin)
assert isinstance(j["prompt_tokens"],list) and j["prompt_tokens"][0]==151646, j["prompt_tokens"]
assert len(j["tokens"])>=1 and isinstance(j["text"],str)
t=j["timings"]; assert all(k in t for k in ("prompt_ms","gen_ms","tokens_per_s"))
'; then ok; else bad "run --json fields"; fi
out2=$("$STRATA" run --model "$M" --prompt "Hello world" --max-tokens 8 --temperature 0 --json --ctx 256)
[ "$(echo "$out" | python3 -c 'import json,sys;print(json.load(sys.stdin)["tokens"])')" = \
  "$(echo "$out2" | python3 -c 'import json,sys;print(json.load(sys.stdin)["tokens"])')" ] && ok || bad "greedy not deterministic"

# seeded sampling: same seed same tokens
s1=$("$STRATA" run --model "$M" --prompt "Hi" --max-tokens 16 --temperature 1 --seed 9 --json | python3 -c 'import json,sys;print(json.load(sys.stdin)["tokens"])')
s2=$("$STRATA" run --model "$M" --prompt "Hi" --max-tokens 16 --temperature 1 --seed 9 --json | python3 -c 'import json,sys;print(json.load(sys.stdin)["tokens"])')
[ "$s1" = "$s2" ] && ok || bad "same seed gave different tokens"

# --max-tokens is honoured
n=$("$STRATA" run --model "$M" --prompt "Hi" --max-tokens 5 --temperature 0 --json | python3 -c 'import json,sys;j=json.load(sys.stdin);print(len(j["tokens"]) if j["stop_reason"]!="eog" else 5)')
[ "$n" = 5 ] && ok || bad "max-tokens: got $n"

# --chat renders the R1 template: exactly one BOS, then <｜User｜>
c=$("$STRATA" run --model "$M" --prompt "Hi" --max-tokens 1 --temperature 0 --chat --json | python3 -c 'import json,sys;print(json.load(sys.stdin)["prompt_tokens"])')
echo "$c" | python3 -c 'import sys,ast; t=ast.literal_eval(sys.stdin.read()); assert t[0]==151646 and t.count(151646)==1 and t[1]==151644 and t[-2:]==[151648,198], t' && ok || bad "chat prompt tokens: $c"

# tokenize contract
t=$("$STRATA" tokenize --model "$DATA/vocab/ggml-vocab-qwen2.gguf" --text "Hello world")
[ "$t" = "[9707,1879]" ] && ok || bad "tokenize: $t"

# inspect
"$STRATA" inspect "$M" >"$W/inspect" 2>&1 && grep -q "blk.0.attn_q.weight" "$W/inspect" && grep -q "qwen2.block_count" "$W/inspect" && ok || bad "inspect"

# Bad input
expect_fail "missing file" "cannot open" "$STRATA" run --model "$W/nope.gguf" --prompt hi
head -c 1000 "$M" >"$W/trunc.gguf"
expect_fail "truncated gguf" "invalid GGUF|truncated" "$STRATA" run --model "$W/trunc.gguf" --prompt hi
head -c $(( $(stat -c %s "$M") - 4096 )) "$M" >"$W/short.gguf"
expect_fail "short tensor data" "outside the file" "$STRATA" run --model "$W/short.gguf" --prompt hi
printf 'GGUF\x03\x00\x00\x00\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff' >"$W/hostile.gguf"
expect_fail "hostile counts" "exceeds file size" "$STRATA" inspect "$W/hostile.gguf"
echo "not a gguf at all" >"$W/text.gguf"
expect_fail "bad magic" "bad magic" "$STRATA" run --model "$W/text.gguf" --prompt hi
expect_fail "prompt longer than context" "context holds 8" "$STRATA" run --model "$M" --prompt "one two three four five six seven eight nine ten eleven" --ctx 8
expect_fail "unknown shape" "unknown shape" "$STRATA" model synth --shape gpt5 --out "$W/x.gguf"
expect_fail "unsupported type" "cannot synthesize|unknown tensor type" "$STRATA" model synth --type q3_k --out "$W/x.gguf"
expect_fail "unsupported arch synth" "unsupported architecture" "$STRATA" model synth --shape tiny-llama --arch mamba --out "$W/m.gguf"
# A file with an unsupported architecture: patch the arch string of a valid file.
python3 - "$M" "$W/arch.gguf" <<'PY'
import sys
d=open(sys.argv[1],'rb').read()
i=d.index(b'qwen2')          # value of general.architecture comes first
open(sys.argv[2],'wb').write(d[:i]+b'qwen9'+d[i+5:])
PY
expect_fail "unsupported arch file" "unsupported architecture 'qwen9'" "$STRATA" run --model "$W/arch.gguf" --prompt hi
# Unsupported tensor type: flip attn_q's type id to Q4_K (12) in a copy.
python3 - "$M" "$W/type.gguf" <<'PY'
import struct,sys
d=bytearray(open(sys.argv[1],'rb').read())
name=b'blk.0.attn_q.weight'
i=d.index(struct.pack('<Q',len(name))+name)+8+len(name)
nd=struct.unpack_from('<I',d,i)[0]
t=i+4+8*nd
assert struct.unpack_from('<I',d,t)[0]==8
struct.pack_into('<I',d,t,24)  # I8: a valid ggml type Strata does not compute with
open(sys.argv[2],'wb').write(d)
PY
expect_fail "unsupported tensor type" "not supported|overlap|outside" "$STRATA" run --model "$W/type.gguf" --prompt hi

echo "cli: $pass passed, $fail failed"
[ $fail -eq 0 ]

# bench (issue 3): llama-bench style pp/tg numbers and the memory bandwidth probe, as JSON
out=$("$STRATA" bench --model "$M" -p 16 -n 4 --reps 1 --threads 2 --json)
if echo "$out" | python3 -c '
import json,sys
j=json.load(sys.stdin)
pp,tg=j["pp"],j["tg"]
assert pp["test"]=="pp16" and pp["n_tokens"]==16 and tg["test"]=="tg4" and tg["n_tokens"]==4, j
for t in (pp,tg):
  assert len(t["samples"])==1 and t["mean"]>0 and t["median"]==t["mean"] and t["stddev"]==0, t
w=tg["weight_bytes_per_token"]
assert 0<w<=j["weight_bytes"], (w,j["weight_bytes"])
assert abs(tg["effective_gbs"]-tg["mean"]*w/1e9)<1e-6*tg["effective_gbs"], tg
assert j["threads"]==2 and j["reps"]==1
'; then ok; else bad "bench --json fields: $out"; fi
"$STRATA" bench --model "$M" -p 8 -n 2 --reps 2 >"$W/bench" 2>&1 && grep -q "pp8" "$W/bench" && grep -q "tg2" "$W/bench" && ok || bad "bench table"
out=$("$STRATA" bench --memory-bandwidth --membw-mib 16 --membw-passes 2 --threads 2 --json)
echo "$out" | python3 -c '
import json,sys
m=json.load(sys.stdin)["memory_bandwidth"]
assert len(m["samples"])==2 and m["best_gbs"]==max(m["samples"])>0 and m["buffer_mib"]==16, m
' && ok || bad "bench --memory-bandwidth: $out"
expect_fail "bench without a model" "give --model" "$STRATA" bench
expect_fail "bench zero reps" "reps must be" "$STRATA" bench --model "$M" --reps 0
expect_fail "bench missing model" "cannot open" "$STRATA" bench --model "$W/nope.gguf"

# perplexity (issue 18): llama-perplexity's output format, --chunks, the errors
for i in $(seq 1 40); do echo "Line $i of a short text that the tiny model scores, again."; done >"$W/ppl.txt"
if "$STRATA" perplexity --model "$M" -f "$W/ppl.txt" -c 32 --chunks 3 -t 2 >"$W/ppl" 2>"$W/ppl.err" &&
   grep -qE '^\[1\][0-9]+\.[0-9]{4},\[2\][0-9]+\.[0-9]{4},\[3\]([0-9]+\.[0-9]{4}),$' "$W/ppl" &&
   grep -qE '^Final estimate: PPL = [0-9]+\.[0-9]{4} \+/- [0-9]+\.[0-9]{5}$' "$W/ppl" &&
   [ "$(sed -nE 's/.*\[3\]([0-9.]+),$/\1/p' "$W/ppl")" = "$(sed -nE 's/^Final estimate: PPL = ([0-9.]+) .*/\1/p' "$W/ppl")" ]
then ok; else bad "perplexity output: $(cat "$W/ppl" "$W/ppl.err")"; fi
expect_fail "perplexity short text" "needs at least 2048 tokens" "$STRATA" perplexity --model "$M" -f "$W/ppl.txt" -c 1024
expect_fail "perplexity missing file" "cannot open" "$STRATA" perplexity --model "$M" -f "$W/nope.txt"
expect_fail "perplexity without a file" "file is required" "$STRATA" perplexity --model "$M"

echo "cli (with bench): $pass passed, $fail failed"
[ $fail -eq 0 ]
